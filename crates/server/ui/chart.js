// Claims and completions per minute over the last hour, as SVG bars.
const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function throughputChart(report) {
  const W = 600, H = 160, pad = 24;
  const minutes = report.minutes;
  const max = Math.max(1, ...minutes.map((m) => Math.max(m.claims, m.completions)));
  const claims = minutes.reduce((a, m) => a + m.claims, 0);
  const completions = minutes.reduce((a, m) => a + m.completions, 0);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `Last hour: ${claims} claims and ${completions} completions; busiest minute ${max}` });
  svg.append(s("title", {}, "Claims and completions per minute, last hour"));
  const slot = (W - pad) / minutes.length;
  const y = (v) => H - pad - (v / max) * (H - 2 * pad);
  minutes.forEach((m, i) => {
    const x = pad + i * slot;
    for (const [kind, v, dx] of [["claims", m.claims, 0], ["completions", m.completions, slot / 2]]) {
      if (!v) continue;
      const bar = s("rect", { class: kind, x: x + dx, y: y(v), width: Math.max(1, slot / 2 - 1), height: H - pad - y(v) });
      bar.append(s("title", {}, `${new Date(m.start_ms).toLocaleTimeString()}: ${v} ${kind}`));
      svg.append(bar);
    }
  });
  svg.append(s("line", { class: "axis", x1: pad, y1: H - pad, x2: W, y2: H - pad }));
  svg.append(s("text", { x: 0, y: pad }, String(max)));
  svg.append(s("text", { x: pad, y: H - 6 }, "−60 min"));
  svg.append(s("text", { x: W - 30, y: H - 6 }, "now"));
  return svg;
}

// Adds a live event to the report's current minute (true if it counted).
export function countEvent(report, event) {
  const kind = event.op === "task_completed" ? "completions"
    : (event.op === "task_claimed" || event.op === "task_pushed") ? "claims" : null;
  if (!kind || !report) return false;
  const start = Math.floor(event.at_ms / 60000) * 60000;
  let last = report.minutes[report.minutes.length - 1];
  while (last.start_ms < start) {
    report.minutes.shift();
    last = { start_ms: last.start_ms + 60000, claims: 0, completions: 0 };
    report.minutes.push(last);
  }
  const minute = report.minutes.find((m) => m.start_ms === start);
  if (minute) minute[kind] += 1;
  return true;
}
