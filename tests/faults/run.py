#!/usr/bin/env python3
"""The fault suite: a real 3-member etcd cluster, two `ifc serve` nodes, a recorded
workload, faults, and a checker (see check.py). Then the embedded store's server,
SIGKILLed under load, cycle after cycle. Then witness verify at scale on both
backends (witness_scale.py).

    tests/faults/run.py --short            # CI: a few seconds per fault
    tests/faults/run.py --out docs/RELIABILITY.md   # the full run, by hand

Exit status 1 if any invariant is violated (or, in full mode, a target missed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import httpx

import witness_scale
from check import Election, check, phase_table, witness_records
from cluster import EtcdCluster, IfcNode
from workload import History, start_workers

CLAIM_TIMEOUT_MS = 2000


LEADER_KILL = "etcd leader SIGKILL"


def etcd_faults(cluster: EtcdCluster, nodes: List[IfcNode], elections: Dict[str, Election]
                ) -> List[Tuple[str, Callable[[], None], Callable[[], None]]]:
    """(phase, inject, heal) in run order. The leader kill records, in `elections`,
    when the leader died and when the surviving members named a new one."""
    state = {}

    def kill_follower():
        state["m"] = cluster.follower()
        state["m"].kill9()

    def kill_leader():
        state["m"] = cluster.wait_leader()
        killed = time.monotonic()
        state["m"].kill9()
        # leader() asks only live members and names a live leader, so the first
        # answer after the kill is the new leader (polled every 10 ms).
        cluster.wait_leader(poll=0.01)
        elections[LEADER_KILL] = Election(killed, time.monotonic())

    def pause_follower():
        state["m"] = cluster.follower()
        state["m"].pause()

    def restart_member():
        state["m"].start()

    def resume_member():
        state["m"].resume()

    def pause_node():
        nodes[0].pause()

    def resume_node():
        nodes[0].resume()

    def kill_node():
        nodes[1].kill9()

    def restart_node():
        nodes[1].start()
        nodes[1].wait_ready()

    nothing = lambda: None  # noqa: E731
    return [
        ("baseline", nothing, nothing),
        ("etcd follower SIGKILL", kill_follower, restart_member),
        (LEADER_KILL, kill_leader, restart_member),
        ("etcd follower SIGSTOP", pause_follower, resume_member),
        (f"ifc node SIGSTOP past the {CLAIM_TIMEOUT_MS} ms claim lease", pause_node, resume_node),
        ("ifc node SIGKILL + restart", kill_node, restart_node),
    ]


async def drive(history: History, nodes: List[str], token: str, workers: int,
                faults, hold: float, settle: float) -> List[str]:
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits) as http:
        tasks = await start_workers(nodes, token, history, workers, http, stop)
        phases = []
        for name, inject, heal in faults:
            history.phase = name
            phases.append(name)
            print(f"  {name}", flush=True)
            await asyncio.to_thread(inject)
            await asyncio.sleep(hold)
            await asyncio.to_thread(heal)
            await asyncio.sleep(settle)
        history.phase = "drain"
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return phases


def etcd_run(args, workdir: Path) -> Tuple[list, dict]:
    token = secrets.token_hex(24)
    cluster = EtcdCluster(workdir)
    cluster.start()
    nodes = [IfcNode(f"ifc{i + 1}", workdir, args.ifc_bin, token, cluster.endpoints(),
                     CLAIM_TIMEOUT_MS) for i in range(2)]
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        history = History()
        elections: Dict[str, Election] = {}
        faults = etcd_faults(cluster, nodes, elections)
        phases = asyncio.run(drive(history, [n.url for n in nodes], token, args.workers, faults,
                                   args.hold, args.settle))
        records = witness_records(nodes[0].url, token)
        rows = phase_table(history, phases, records, elections)
        problems = check(history, nodes[0].url, token, records)
        if not args.short:
            problems.update(missed_targets(rows))
        return rows, problems
    finally:
        for n in nodes:
            n.stop()
        cluster.stop()


def embedded_run(args, workdir: Path) -> Tuple[list, dict]:
    token = secrets.token_hex(24)
    node = IfcNode("ifc-embedded", workdir, args.ifc_bin, token, None, CLAIM_TIMEOUT_MS)
    node.start()
    node.wait_ready()
    history = History()

    def kill_restart():
        node.kill9()
        node.start()
        node.wait_ready()

    faults = [(f"embedded SIGKILL cycle {i + 1}", lambda: None, kill_restart)
              for i in range(args.cycles)]
    try:
        phases = asyncio.run(drive(history, [node.url], token, args.workers, faults,
                                   args.hold / 2, 0.2))
        records = witness_records(node.url, token)
        rows = phase_table(history, phases, records)
        problems = check(history, node.url, token, records)
        return rows, problems
    finally:
        node.stop()


def missed_targets(rows: list) -> Dict[str, List[str]]:
    """The full run's targets (issue 17): with one follower down (killed or stopped),
    no request fails; with the leader killed, none fails that was sent after the new
    leader was elected (etcd's election is the only gap)."""
    missed: Dict[str, List[str]] = {"failed with one follower down": [],
                                    "failed after the new leader was elected": []}
    for r in rows:
        if "follower" in r["phase"] and r["failed"]:
            missed["failed with one follower down"].append(f"{r['failed']} in {r['phase']}")
        if r.get("election") and r["election"]["failed_after"]:
            missed["failed after the new leader was elected"].append(
                f"{r['election']['failed_after']} in {r['phase']}")
    return missed


def election_line(r: dict) -> str:
    e = r["election"]
    line = (f"- {r['phase']}: the surviving members named a new leader "
            f"{e['elected_after_s'] * 1000:.0f} ms after the kill. Failed requests sent before "
            f"that: {e['failed_before']}; sent after it: {e['failed_after']}.")
    if e["failures"]:
        line += " Each failure, sent and answered relative to the kill: " + "; ".join(
            f"{f['op']} {f['code']} sent {f['sent_ms']:+.0f} ms, answered {f['answered_ms']:+.0f} ms"
            for f in e["failures"][:10]) + "."
    return line


def stale_cell(fates: dict) -> str:
    """"refused of sent" for completes whose claim had lapsed (check.stale_completes)."""
    sent = sum(fates.values())
    if not sent:
        return "–"
    refused = fates.get("refused", 0) + fates.get("lost", 0)
    return (f"{refused} of {sent} ({fates.get('refused', 0)} answered, "
            f"{fates.get('lost', 0)} unanswered and not applied)")


def report(title: str, rows: list, problems: dict) -> List[str]:
    out = [f"### {title}", "",
           "| phase | requests | ok | failed | failures by code | moved to the other node "
           "| longest gap between successful writes | stale writes refused |",
           "|---|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        kinds = ", ".join(f"{k} × {v}" for k, v in sorted(r["kinds"].items())) or "–"
        out.append(f"| {r['phase']} | {r['requests']} | {r['ok']} | {r['failed']} | {kinds} "
                   f"| {r['moved']} | {r['gap_s'] * 1000:.0f} ms | {stale_cell(r['stale'])} |")
    out.append("")
    out += [election_line(r) for r in rows if r.get("election")]
    out += ["", f"Witness records checked: {problems.get('_records', ['?'])[0]}.", ""]
    for name in sorted(k for k in problems if not k.startswith("_")):
        found = problems[name]
        out.append(f"- **{name}**: {'none' if not found else f'{len(found)} VIOLATIONS'}")
        for line in found[:10]:
            out.append(f"    - {line}")
    out.append("")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--short", action="store_true", help="CI mode: short phases, few cycles")
    ap.add_argument("--out", help="write the report here (Markdown)")
    ap.add_argument("--ifc-bin", default=os.environ.get("IFC_BIN", "target/debug/ifc"))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    args.hold = 4.0 if args.short else 20.0
    args.settle = 2.0 if args.short else 5.0
    args.cycles = 4 if args.short else 40
    args.workers = args.workers or (6 if args.short else 16)
    args.ifc_bin = str(Path(args.ifc_bin).resolve())

    workdir = Path(tempfile.mkdtemp(prefix="ifc-faults-"))
    started = time.time()
    print(f"etcd cluster faults (logs in {workdir})", flush=True)
    etcd_rows, etcd_problems = etcd_run(args, workdir / "etcd")
    print("embedded store SIGKILL cycles", flush=True)
    emb_rows, emb_problems = embedded_run(args, workdir / "embedded")
    print("witness verify at scale", flush=True)
    scale_rows, scale_problems = witness_scale.run(args.ifc_bin, workdir / "scale", args.short)

    mode = "short (CI)" if args.short else "full"
    lines = ["# Reliability", "",
             f"Written by `tests/faults/run.py{' --short' if args.short else ''}"
             f"{' --out ' + args.out if args.out else ''}` ({mode} mode, "
             f"{args.workers} workers, {args.hold:.0f} s per fault, "
             f"{time.time() - started:.0f} s in all) on {time.strftime('%Y-%m-%d')}.", "",
             "A 3-member etcd cluster on loopback (etcd's default heartbeat and election "
             "timeout) with two `ifc serve` nodes given all three endpoints; a workload of "
             "swarms that create, claim and complete tasks and heartbeat, every request and "
             "answer recorded; then the checker (`tests/faults/check.py`) reads the history "
             "and the witness log. A failed request is any answer but a 2xx or a correct "
             "refusal (a 4xx with its code, e.g. a stale claim fenced after a pause). A stale "
             "write is a complete whose claim had lapsed (the witness log holds that claim "
             "token's lapse record); it is refused if it completed nothing, whether its "
             "refusal reached the client or the client's 8 s timeout came first.", ""]
    lines += report("etcd: 3 members, 2 ifc nodes", etcd_rows, etcd_problems)
    lines += report(f"embedded store: SIGKILL under load, {args.cycles} cycles", emb_rows,
                    emb_problems)
    lines += witness_scale.report(scale_rows, scale_problems)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    violated = [k for p in (etcd_problems, emb_problems, scale_problems) for k, v in p.items()
                if not k.startswith("_") and v]
    return 1 if violated else 0


if __name__ == "__main__":
    sys.exit(main())
