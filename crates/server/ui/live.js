// One event stream per tab (/v1/events), shared by every page: pages
// subscribe, and refresh what an event touches. No polling.
import { openStream } from "./sse.js";
import { token } from "./api.js";

const listeners = new Set();
let stream = null;

export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function start(status) {
  stop();
  stream = openStream("/v1/events", {
    headers: () => ({ Authorization: `Bearer ${token.get() ?? ""}` }),
    onEvent: (type, data) => { for (const fn of [...listeners]) fn(data); },
    onState: (s) => {
      status.hidden = false;
      if (s.state === "live") {
        status.className = "stream live";
        status.textContent = s.resumed ? `Live (resumed after revision ${s.resumed})` : "Live";
        // Whatever happened while cut off: every page reloads its data once.
        if (s.resumed !== undefined) for (const fn of [...listeners]) fn({ op: "stream_resumed" });
      } else if (s.state === "cut") {
        status.className = "stream cut";
        status.textContent = `Stream cut (${s.message}); reconnecting in ${Math.round(s.retryMs / 100) / 10}s`;
      } else {
        status.className = "stream cut";
        status.textContent = `Stream refused: ${s.message}`;
      }
    },
  });
}

export function stop() {
  stream?.stop();
  stream = null;
}

// Runs fn at most once per `ms` however many events ask for it.
export function debounced(fn, ms = 300) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}
