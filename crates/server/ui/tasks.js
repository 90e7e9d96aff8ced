// Tasks: search by id, filter by state / type / capability, a page at a time.
import { get, enc } from "./api.js";
import { h, badge, table, ago } from "./dom.js";

const STATES = ["ready", "claimed", "completed", "dead", "cancelled"];

export async function tasks(view, { live, params }) {
  const state = STATES.includes(params.get("state")) ? params.get("state") : "ready";
  const filters = { type: params.get("type") ?? "", capability: params.get("capability") ?? "" };
  const pages = [null]; // the `after` of each page seen, for going back
  let page = 0;
  const list = h("div", {}, "Loading…");
  const pager = h("div", { class: "actions" });

  const search = h("form", { class: "filters", role: "search", "aria-label": "Find a task",
    onsubmit: (e) => { e.preventDefault(); const id = e.target.elements.id.value.trim(); if (id) location.hash = `#/task/${enc(id)}`; } },
    h("label", {}, "Task id", h("input", { name: "id", id: "task-search", "aria-label": "Task id", placeholder: "task id" })),
    h("button", { type: "submit" }, "Open task"));
  const stateSelect = h("select", { id: "filter-state", "aria-label": "State",
    onchange: () => go({ state: stateSelect.value }) }, STATES.map((s) => h("option", { value: s, selected: s === state }, s)));
  const typeInput = h("input", { id: "filter-type", "aria-label": "Task type", value: filters.type, placeholder: "any" });
  const capInput = h("input", { id: "filter-capability", "aria-label": "Capability", value: filters.capability, placeholder: "any" });
  const filterForm = h("form", { class: "filters", "aria-label": "Filter tasks",
    onsubmit: (e) => { e.preventDefault(); go({ type: typeInput.value.trim(), capability: capInput.value.trim() }); } },
    h("label", {}, "State", stateSelect), h("label", {}, "Type", typeInput), h("label", {}, "Capability", capInput),
    h("button", { type: "submit" }, "Filter"));

  function go(change) {
    const next = new URLSearchParams({ state, ...filters, ...change });
    for (const [k, v] of [...next]) if (!v) next.delete(k);
    location.hash = `#/tasks?${next}`;
  }

  async function load() {
    const after = pages[page];
    const q = new URLSearchParams({ state, limit: "50" });
    if (after) q.set("after", after);
    const answer = await get(`/v1/tasks?${q}`);
    const shown = answer.tasks.filter((t) =>
      (!filters.type || t.record.task_type === filters.type) &&
      (!filters.capability || t.record.required_capabilities.includes(filters.capability)));
    pages[page + 1] = answer.next_after ?? undefined;
    list.replaceChildren(shown.length === 0 ? h("p", { class: "muted" }, `No ${state} tasks${filters.type || filters.capability ? " matching the filter" : ""} on this page.`) :
      table(["Task", "State", "Type", { text: "Capabilities", cls: "opt" }, "Owner", { text: "Attempts", cls: "num" }, { text: "Created", cls: "opt" }],
        shown.map((t) => h("tr", { "data-task": t.record.task_id },
          h("td", {}, h("a", { href: `#/task/${enc(t.record.task_id)}` }, t.record.task_id)),
          h("td", {}, badge(t.state)), h("td", {}, t.record.task_type),
          h("td", { class: "opt" }, t.record.required_capabilities.join(", ") || "—"),
          h("td", {}, t.record.owner ?? "—"),
          h("td", { class: "num" }, `${t.record.attempts}/${t.record.max_attempts}`),
          h("td", { class: "opt" }, ago(t.record.created_at_ms)))), `${state} tasks`));
    pager.replaceChildren(
      h("button", { type: "button", class: "quiet", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
      h("span", { class: "muted" }, `Page ${page + 1}`),
      h("button", { type: "button", class: "quiet", disabled: !answer.next_after, onclick: () => { page += 1; load(); } }, "Next page"));
  }

  view.replaceChildren(h("h1", {}, "Tasks"), h("section", { class: "card" }, search, filterForm, list, pager));
  await load().catch((e) => list.replaceChildren(h("p", { class: "bad" }, e.message)));
  const refresh = live.debounced(() => load().catch(() => {}));
  return live.onEvent((e) => { if (e.op === "stream_resumed" || (e.task_id && e.op !== "task_renewed")) refresh(); });
}
