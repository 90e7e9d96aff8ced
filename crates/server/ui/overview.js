// Overview: swarms, queues, throughput, open blockers, dead letters, witness.
import { get, enc } from "./api.js";
import { h, card, table, ago, time } from "./dom.js";
import { throughputChart, countEvent } from "./chart.js";

export async function overview(view, { live, flash }) {
  let report = null;
  const parts = {
    swarms: h("div", {}, "Loading…"), queues: h("div", {}, "Loading…"), chart: h("div", {}, "Loading…"),
    blockers: h("div", {}, "Loading…"), dead: h("div", {}, "Loading…"), witness: h("div", {}, "Loading…"),
  };
  view.replaceChildren(h("h1", { class: "sr-title" }, "Overview"), h("div", { class: "grid" },
    h("section", { class: "card wide", "aria-label": "Live swarms" }, h("h2", {}, "Live swarms"), parts.swarms),
    card("Queue depth", parts.queues),
    h("section", { class: "card", "aria-label": "Throughput" }, h("h2", {}, "Claims and completions per minute"), parts.chart),
    card("Open blockers", parts.blockers),
    card("Dead letters", parts.dead),
    card("Witness chains", parts.witness)));

  async function swarms() {
    const list = await get("/v1/swarms");
    const stats = await Promise.all(list.map((s) => get(`/v1/swarms/${enc(s.swarm_id)}`).catch(() => null)));
    parts.swarms.replaceChildren(list.length === 0 ? h("p", { class: "muted" }, "No live swarms.") :
      table(["Swarm", "Capabilities", { text: "Tasks held", cls: "num" }, { text: "Claimed", cls: "num opt" }, { text: "Failed", cls: "num opt" }, { text: "Registered", cls: "opt" }],
        list.map((s, i) => h("tr", { "data-swarm": s.swarm_id },
          h("td", {}, s.swarm_id), h("td", {}, s.capabilities.join(", ") || "—"),
          h("td", { class: "num" }, stats[i]?.current_claims.length ?? "?"),
          h("td", { class: "num opt" }, stats[i]?.tasks_claimed ?? "?"),
          h("td", { class: "num opt" }, stats[i]?.tasks_failed ?? "?"),
          h("td", { class: "opt", title: time(s.registered_at_ms) }, ago(s.registered_at_ms)))), "Live swarms"));
  }
  async function queues() {
    const q = await get("/v1/queues");
    const states = ["ready", "claimed", "completed", "dead", "cancelled"];
    parts.queues.replaceChildren(
      table(states.map((s) => ({ text: s, cls: "num" })), [h("tr", {}, states.map((s) => h("td", { class: "num", "data-state": s }, q.states[s])))], "Tasks by state"),
      h("h3", {}, "Ready by capability set"),
      q.capability_sets.length === 0 ? h("p", { class: "muted" }, "Nothing ready.") :
        table(["Capabilities", { text: "Ready", cls: "num" }], q.capability_sets.map((c) =>
          h("tr", {}, h("td", {}, c.capabilities.join(", ") || "(any)"), h("td", { class: "num" }, c.ready))), "Ready by capability set"));
    parts.dead.replaceChildren(h("p", {}, h("strong", { "data-dead": q.states.dead }, q.states.dead), " dead-lettered. ",
      h("a", { href: "#/dead" }, "Review and retry")));
  }
  async function chart() {
    report = await get("/v1/stats/throughput");
    drawChart();
  }
  function drawChart() {
    parts.chart.replaceChildren(throughputChart(report),
      h("p", { class: "legend muted" }, h("span", { class: "claims" }, "claims "), h("span", { class: "completions" }, "completions "),
        report.since_ms > Date.now() - 3600000 ? `· counted since ${time(report.since_ms)} (this node's start)` : ""));
  }
  async function blockers() {
    const list = await get("/v1/blockers?open=true");
    parts.blockers.replaceChildren(list.length === 0 ? h("p", { class: "muted" }, "No open blockers.") :
      h("ul", {}, list.map((b) => h("li", {}, h("strong", {}, b.info.type), ` from ${b.swarm_id}: ${b.info.description} `, h("a", { href: "#/blockers" }, "help")))));
  }
  async function witness() {
    const v = await get("/v1/witness/verify?max_chains=1000");
    parts.witness.replaceChildren(h("p", {}, v.ok ? h("span", { class: "badge ok" }, "verified") : h("span", { class: "badge bad" }, "tampering found"),
      ` ${v.chains} chains, ${v.records} records checked${v.next_chain ? " (first 1,000 chains)" : ""}.`),
      v.problems.length ? h("ul", {}, v.problems.slice(0, 10).map((p) => h("li", { class: "bad" }, `${p.chain} #${p.seq}: ${p.problem}`))) : "");
  }
  const show = (part, f) => f().catch((e) => part.replaceChildren(h("p", { class: "bad" }, e.message)));
  const all = () => Promise.all([show(parts.swarms, swarms), show(parts.queues, queues), show(parts.chart, chart), show(parts.blockers, blockers), show(parts.witness, witness)]);
  await all();

  const refreshSwarms = live.debounced(() => show(parts.swarms, swarms));
  const refreshQueues = live.debounced(() => show(parts.queues, queues));
  const refreshBlockers = live.debounced(() => show(parts.blockers, blockers));
  const refreshWitness = live.debounced(() => show(parts.witness, witness), 3000);
  return live.onEvent((e) => {
    if (e.op === "stream_resumed") return all();
    if (countEvent(report, e)) drawChart();
    if (e.op.startsWith("swarm_") || e.op.startsWith("task_")) refreshSwarms();
    if (e.op.startsWith("task_") && e.op !== "task_renewed") refreshQueues();
    if (e.op.startsWith("blocker_")) refreshBlockers();
    if (e.op !== "task_renewed") refreshWitness();
  });
}
