// One task: its record, attempt history, live claim with its deadline, and
// its witness chain with a verify badge.
import { get, post, enc } from "./api.js";
import { h, badge, card, table, time } from "./dom.js";

export async function task(view, { live, id, flash }) {
  let countdown = null;
  async function load() {
    const [t, records, verify] = await Promise.all([
      get(`/v1/tasks/${enc(id)}`),
      get(`/v1/witness?task_id=${enc(id)}`).catch(() => []),
      get(`/v1/witness/verify?from_chain=${enc(`task/${id}`)}&max_chains=1`).catch(() => null),
    ]);
    const r = t.record;
    clearInterval(countdown);
    const claim = t.state === "claimed" && t.deadline_ms
      ? h("p", {}, `Held by ${r.owner}, token ${t.token}; lease ends in `, h("span", { class: "countdown", id: "deadline", role: "timer", "aria-label": "Time left on the claim" }, ""), t.lapsed ? " (lapsed)" : "")
      : h("p", { class: "muted" }, "No live claim.");
    const tick = () => {
      const el = claim.querySelector?.(".countdown");
      if (el) { const left = Math.max(0, t.deadline_ms - Date.now()); el.textContent = `${(left / 1000).toFixed(0)}s`; }
    };
    tick();
    countdown = setInterval(tick, 1000);
    const actions = h("div", { class: "actions" },
      t.state === "dead" ? h("button", { type: "button", id: "retry", onclick: () => act("retry") }, "Retry") : "",
      t.state === "ready" || t.state === "claimed" ? h("button", { type: "button", class: "quiet", id: "cancel", onclick: () => act("cancel") }, "Cancel task") : "");
    view.replaceChildren(h("h1", {}, "Task ", h("span", { id: "task-id" }, r.task_id), " ", h("span", { id: "task-state" }, badge(t.state))),
      h("div", { class: "grid" },
        card("Record", h("dl", { class: "kv" },
          ...[["Type", r.task_type], ["Priority", r.priority], ["Capabilities", r.required_capabilities.join(", ") || "—"],
            ["Attempts", `${r.attempts}/${r.max_attempts}`], ["Claim lease", `${r.timeout_ms} ms`], ["Created", time(r.created_at_ms)],
            ["Owner", r.owner ?? "—"], ["Error", r.error ?? "—"]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
          h("h3", {}, "Metadata"), h("pre", {}, JSON.stringify(r.metadata, null, 2)),
          r.result !== null && r.result !== undefined ? [h("h3", {}, "Result"), h("pre", {}, JSON.stringify(r.result, null, 2))] : "", actions),
        card("Live claim", claim),
        h("section", { class: "card wide", "aria-label": "Attempts" }, h("h2", {}, "Attempts"), r.history.length === 0 ? h("p", { class: "muted" }, "None yet.") :
          table(["Swarm", "Token", "Claimed", "Ended", "Outcome", { text: "Error", cls: "opt" }],
            r.history.map((a) => h("tr", {}, h("td", {}, a.swarm_id), h("td", {}, a.token), h("td", {}, time(a.claimed_at_ms)), h("td", {}, time(a.ended_at_ms)), h("td", {}, a.outcome), h("td", { class: "opt" }, a.error ?? ""))), "Attempts")),
        h("section", { class: "card wide", "aria-label": "Witness chain" }, h("h2", {}, "Witness chain ",
          verify ? (verify.ok ? h("span", { class: "badge ok", id: "chain-badge" }, "verified") : h("span", { class: "badge bad", id: "chain-badge" }, "broken")) : ""),
          table(["#", "Op", "Actor", "Outcome", "At", { text: "Hash", cls: "opt" }],
            records.map((w) => h("tr", {}, h("td", {}, w.seq), h("td", {}, w.op), h("td", {}, w.actor), h("td", {}, w.outcome), h("td", {}, time(w.at_ms)), h("td", { class: "opt" }, w.hash.slice(0, 12)))), "Witness records"))));
  }
  async function act(what) {
    try {
      await post(`/v1/tasks/${enc(id)}/${what}`);
      flash(`Task ${id}: ${what} done.`, true);
      await load();
    } catch (e) { flash(e.message); }
  }
  await load().catch((e) => view.replaceChildren(h("h1", {}, `Task ${id}`), h("p", { class: "bad" }, e.message)));
  const refresh = live.debounced(() => load().catch(() => {}));
  const off = live.onEvent((e) => { if (e.op === "stream_resumed" || e.task_id === id) refresh(); });
  return () => { off(); clearInterval(countdown); };
}
