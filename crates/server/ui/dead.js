// Dead letters: tasks out of attempts, with a retry (admin token).
import { get, post, enc } from "./api.js";
import { h, table, time } from "./dom.js";

export async function dead(view, { live, flash }) {
  const list = h("div", {}, "Loading…");
  const pages = [null];
  let page = 0;
  view.replaceChildren(h("h1", {}, "Dead letters"), h("section", { class: "card" }, list));
  async function load() {
    const q = new URLSearchParams({ state: "dead", limit: "50" });
    if (pages[page]) q.set("after", pages[page]);
    const answer = await get(`/v1/tasks?${q}`);
    pages[page + 1] = answer.next_after ?? undefined;
    list.replaceChildren(answer.tasks.length === 0 ? h("p", { class: "muted" }, "No dead letters.") :
      table(["Task", "Type", "Last error", { text: "Attempts", cls: "num" }, { text: "Last attempt", cls: "opt" }, ""],
        answer.tasks.map((t) => { const r = t.record; const last = r.history[r.history.length - 1];
          return h("tr", { "data-task": r.task_id }, h("td", {}, h("a", { href: `#/task/${enc(r.task_id)}` }, r.task_id)), h("td", {}, r.task_type),
            h("td", {}, r.error ?? last?.outcome ?? "—"), h("td", { class: "num" }, r.attempts),
            h("td", { class: "opt" }, time(last?.ended_at_ms)),
            h("td", {}, h("button", { type: "button", "aria-label": `Retry task ${r.task_id}`, onclick: () => retry(r.task_id) }, "Retry"))); }), "Dead letters"),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "quiet", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
        h("button", { type: "button", class: "quiet", disabled: !answer.next_after, onclick: () => { page += 1; load(); } }, "Next page")));
  }
  async function retry(id) {
    try { await post(`/v1/tasks/${enc(id)}/retry`); flash(`Task ${id} is ready again.`, true); await load(); } catch (e) { flash(e.message); }
  }
  await load().catch((e) => list.replaceChildren(h("p", { class: "bad" }, e.message)));
  const refresh = live.debounced(() => load().catch(() => {}));
  return live.onEvent((e) => { if (e.op === "stream_resumed" || e.op === "task_dead_lettered" || e.op === "task_retried") refresh(); });
}
