"""Reads the recorded history and the witness log, and proves the invariants.

- No acknowledged write lost: every acknowledged create exists; every acknowledged
  complete left its task completed by that swarm, and its witness record carries
  that claim token.
- `unavailable` means nothing was applied: a create answered `unavailable` never
  made its task; a claim answered `unavailable` left no claim record; a complete
  answered `unavailable` completed nothing.
- One live owner: in each task's witness chain a claim begins only when no claim is
  live, and every completion carries the live claim's token and comes from its holder.
- The witness log verifies.
- No 500 from any request.
- Stale writes are refused: a complete whose claim had lapsed (the witness log has
  that claim token's lapse record) never completed the task.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional

import httpx

from workload import Call, History

LAPSES = {"task_requeued", "task_dead_lettered"}
ENDS_CLAIM = {"task_completed", "task_failed", "task_requeued", "task_dead_lettered",
              "task_cancelled", "push_declined", "push_expired"}
BEGINS_CLAIM = {"task_claimed", "task_pushed"}


@dataclass
class Election:
    """When a phase's etcd leader was killed, and when the others named a new one
    (time.monotonic(), as the workload's calls are stamped)."""
    killed: float
    elected: float


def witness_records(node: str, token: str) -> List[dict]:
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.get(f"{node}/v1/witness/export", headers=headers, timeout=300)
    r.raise_for_status()
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def stale_completes(history: History, records: List[dict]) -> Dict[str, Dict[str, int]]:
    """Per phase, the completes sent with a claim token that lapsed, by fate.

    refused: answered with a refusal; lost: no answer (or `outcome_unknown`) and
    no completion with that token in the log; accepted: a completion with that
    token is in the log (a violation).
    """
    lapsed = {(r["task_id"], r["token"]) for r in records if r["op"] in LAPSES}
    completed = {(r["task_id"], r["token"]) for r in records if r["op"] == "task_completed"}
    fates: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for call in history.calls:
        if call.op != "complete" or (call.task, call.token) not in lapsed:
            continue
        if (call.task, call.token) in completed or call.ok:
            fate = "accepted"
        elif call.unknown:
            fate = "lost"
        else:
            fate = "refused"
        fates[call.phase][fate] += 1
    return fates


def check(history: History, node: str, token: str,
          records: List[dict]) -> Dict[str, List[str]]:
    """Every violation found, by invariant (an empty list: the invariant holds)."""
    headers = {"Authorization": f"Bearer {token}"}
    problems: Dict[str, List[str]] = defaultdict(list)
    http = httpx.Client(base_url=node, headers=headers, timeout=30)

    chains: Dict[str, List[dict]] = defaultdict(list)
    for rec in records:
        chains[rec["chain"]].append(rec)
    for chain in chains.values():
        chain.sort(key=lambda r: r["seq"])

    # One live owner; completions only by the live claim.
    for name, chain in chains.items():
        if not name.startswith("task/"):
            continue
        live = None  # (token, holder)
        for rec in chain:
            op = rec["op"]
            if op in BEGINS_CLAIM:
                if live is not None:
                    problems["two live owners"].append(
                        f"{name}: {op} by {rec['swarm_id']} (token {rec['token']}) while "
                        f"{live[1]} holds token {live[0]}")
                live = (rec["token"], rec["swarm_id"])
            elif op == "task_completed":
                if live is None or rec["token"] != live[0] or rec["swarm_id"] != live[1]:
                    problems["completion without the live claim"].append(
                        f"{name}: completed by {rec['swarm_id']} with token {rec['token']}, "
                        f"live claim {live}")
                live = None
            elif op in ENDS_CLAIM:
                live = None

    completed_by_token = {}
    claimed_by = defaultdict(set)
    for name, chain in chains.items():
        for rec in chain:
            if rec["op"] == "task_completed":
                completed_by_token[(rec["task_id"], rec["token"])] = rec["swarm_id"]
            if rec["op"] == "task_claimed":
                claimed_by[rec["task_id"]].add(rec["swarm_id"])

    for call in history.calls:
        if call.op == "create" and call.ok:
            if http.get(f"/v1/tasks/{call.task}").status_code != 200:
                problems["acknowledged write lost"].append(f"create {call.task} ({call.phase})")
        if call.op == "complete" and call.ok:
            if (call.task, call.token) not in completed_by_token:
                problems["acknowledged write lost"].append(
                    f"complete {call.task} token {call.token} ({call.phase})")
        if call.code == "unavailable":
            if call.op == "create" and f"task/{call.task}" in chains:
                problems["unavailable but applied"].append(f"create {call.task} ({call.phase})")
            if call.op == "claim" and call.swarm in claimed_by.get(call.task, set()):
                problems["unavailable but applied"].append(f"claim {call.task} ({call.phase})")
            if call.op == "complete" and any(
                    t == call.task for (t, _tok) in completed_by_token):
                problems["unavailable but applied"].append(f"complete {call.task} ({call.phase})")
        if call.status >= 500 and call.code not in ("unavailable", "outcome_unknown"):
            problems["500 answers"].append(f"{call.op} {call.task or ''} {call.status} "
                                           f"{call.code} on {call.node} ({call.phase})")

    for phase, fates in stale_completes(history, records).items():
        if fates["accepted"]:
            problems["stale write accepted"].append(f"{fates['accepted']} in {phase}")

    verification = http.get("/v1/witness/verify").json()
    if not verification.get("ok"):
        problems["witness verify"].append(json.dumps(verification.get("problems"))[:2000])
    for invariant in ("two live owners", "acknowledged write lost", "unavailable but applied",
                      "completion without the live claim", "500 answers", "witness verify",
                      "stale write accepted"):
        problems.setdefault(invariant, [])
    problems["_records"] = [str(len(records))]
    return problems


def phase_table(history: History, phases: List[str], records: List[dict],
                elections: Optional[Dict[str, Election]] = None) -> List[dict]:
    """Per phase: requests, failures by kind, the longest gap between successful writes,
    and the stale writes refused; for a phase that killed the leader, its failures
    split by whether they were sent before or after the new leader was elected."""
    elections = elections or {}
    stale = stale_completes(history, records)
    rows = []
    for phase in phases:
        calls = [c for c in history.calls if c.phase == phase]
        writes = sorted(c.end for c in calls if c.ok and c.op in ("create", "claim", "complete"))
        gap = max((b - a for a, b in zip(writes, writes[1:])), default=0.0)
        # A refused connection sent nothing, and the workload moved the request
        # to the other node: counted apart, not as a failed request.
        moved = sum(c.code == "connect_refused" for c in calls)
        failed = [c for c in calls
                  if c.failed and not business_refusal(c) and c.code != "connect_refused"]
        kinds: Dict[str, int] = defaultdict(int)
        for c in failed:
            kinds[c.code or str(c.status)] += 1
        row = {"phase": phase, "requests": len(calls), "ok": sum(c.ok for c in calls),
               "failed": len(failed), "kinds": dict(kinds), "moved": moved, "gap_s": gap,
               "stale": dict(stale.get(phase, {}))}
        if phase in elections:
            row["election"] = election_split(elections[phase], failed)
        rows.append(row)
    return rows


def election_split(election: Election, failed: List[Call]) -> dict:
    """A request sent before the new leader was elected may fail (it met the
    election); one sent after it must not."""
    after = [c for c in failed if c.start >= election.elected]
    return {"elected_after_s": election.elected - election.killed,
            "failed_before": len(failed) - len(after), "failed_after": len(after),
            "failures": [{"op": c.op, "code": c.code or str(c.status),
                          "sent_ms": (c.start - election.killed) * 1000,
                          "answered_ms": (c.end - election.killed) * 1000}
                         for c in sorted(failed, key=lambda c: c.start)]}


def business_refusal(call: Call) -> bool:
    """A 4xx that is a correct answer to the request, not a failure of the service.

    A claim or complete refused because the claim lapsed while a node or member was
    stopped is the fencing doing its job; the checker proves it changed nothing.
    """
    return 400 <= call.status < 500 and call.code not in ("", "internal")
