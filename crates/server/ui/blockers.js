// Blockers: open ones with their helper candidates (least loaded first);
// assign a helper and resolve (admin token).
import { get, post, enc } from "./api.js";
import { h, table, ago } from "./dom.js";

export async function blockers(view, { live, flash }) {
  const list = h("div", {}, "Loading…");
  view.replaceChildren(h("h1", {}, "Blockers"), list);
  // What the operator is typing survives a redraw (events redraw the list).
  const drafts = new Map();
  async function load() {
    const open = await get("/v1/blockers?open=true");
    const focused = document.activeElement && document.activeElement.id;
    const candidates = await Promise.all(open.map((b) => get(`/v1/blockers/${enc(b.blocker_id)}/candidates`).catch(() => [])));
    list.replaceChildren(open.length === 0 ? h("p", { class: "card muted" }, "No open blockers.") : h("div", { class: "grid" },
      open.map((b, i) => {
        const resolution = h("input", { id: `resolution-${b.blocker_id}`, "aria-label": `Resolution for blocker ${b.blocker_id}`, placeholder: "how it was resolved", required: true,
          oninput: (e) => drafts.set(b.blocker_id, e.target.value) });
        resolution.value = drafts.get(b.blocker_id) || "";
        return h("section", { class: "card", "aria-label": `Blocker ${b.blocker_id}`, "data-blocker": b.blocker_id },
          h("h2", {}, `${b.info.type} (${b.info.severity})`),
          h("p", {}, b.info.description),
          h("p", { class: "muted" }, `From ${b.swarm_id}${b.info.task_id ? ` on task ${b.info.task_id}` : ""}, raised ${ago(b.raised_at_ms)}; needs ${b.info.required_capabilities.join(", ") || "nothing special"}.`),
          b.helpers.length ? h("p", {}, `Helpers assigned: ${b.helpers.join(", ")}`) : "",
          h("h3", {}, "Helper candidates"),
          candidates[i].length === 0 ? h("p", { class: "muted" }, "No live swarm can help.") :
            table(["Swarm", { text: "Claims held", cls: "num" }, ""], candidates[i].map((c) => h("tr", { "data-candidate": c.swarm_id },
              h("td", {}, c.swarm_id), h("td", { class: "num" }, c.current_claims),
              h("td", {}, h("button", { type: "button", "aria-label": `Assign ${c.swarm_id} to blocker ${b.blocker_id}`, onclick: () => act(`/v1/blockers/${enc(b.blocker_id)}/assign`, { helper_swarm_id: c.swarm_id }, `Assigned ${c.swarm_id}.`) }, "Assign")))), "Helper candidates"),
          h("form", { class: "actions", "aria-label": `Resolve blocker ${b.blocker_id}`,
            onsubmit: (e) => { e.preventDefault(); act(`/v1/blockers/${enc(b.blocker_id)}/resolve`, { resolution: resolution.value }, `Blocker ${b.blocker_id} resolved.`); } },
            resolution, h("button", { type: "submit", "aria-label": `Resolve blocker ${b.blocker_id}` }, "Resolve")));
      })));
    const again = focused && document.getElementById(focused);
    if (again) again.focus();
  }
  async function act(path, body, done) {
    try {
      await post(path, body);
      if (path.endsWith("/resolve")) drafts.clear();
      flash(done, true);
      await load();
    } catch (e) { flash(e.message); }
  }
  await load().catch((e) => list.replaceChildren(h("p", { class: "bad" }, e.message)));
  const refresh = live.debounced(() => load().catch(() => {}));
  return live.onEvent((e) => { if (e.op === "stream_resumed" || e.op.startsWith("blocker_") || e.op.startsWith("swarm_")) refresh(); });
}
