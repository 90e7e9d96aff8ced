// Server-Sent Events over fetch(): EventSource cannot send an Authorization
// header, and the token must not go in the URL. Reconnects with Last-Event-ID
// after a cut, with backoff; says what it is doing through onState.
export function openStream(path, { headers, onEvent, onState }) {
  let lastId = null;
  let stopped = false;
  let controller = null;
  let delay = 500;

  async function run() {
    while (!stopped) {
      controller = new AbortController();
      const h = { ...headers(), Accept: "text/event-stream" };
      if (lastId !== null) h["Last-Event-ID"] = lastId;
      let why = "the stream ended";
      try {
        const response = await fetch(path, { headers: h, signal: controller.signal, cache: "no-store" });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          if (response.status === 401 || response.status === 403) {
            onState({ state: "refused", message: body.message ?? "refused" });
            return;
          }
          throw new Error(body.message ?? `HTTP ${response.status}`);
        }
        onState({ state: "live", resumed: lastId });
        delay = 500;
        why = await pump(response.body.getReader());
      } catch (e) {
        if (stopped) return;
        why = e.message || "network error";
      }
      if (stopped) return;
      onState({ state: "cut", message: why, lastId, retryMs: delay });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  async function pump(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    let event = { type: "message", data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "the server closed the stream";
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.search(/\r\n|\n|\r/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (event.data.length) {
            const ended = dispatch(event);
            if (ended) return ended;
          }
          event = { type: "message", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? "" : line.slice(colon + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") event.type = v;
        else if (field === "data") event.data.push(v);
        else if (field === "id") event.id = v;
      }
    }
  }

  // Returns why the stream ends, if this event ends it.
  function dispatch(event) {
    let data;
    try { data = JSON.parse(event.data.join("\n")); } catch { return null; }
    if (event.type === "error") {
      // The server's last word: where to resume, and why it stopped.
      if (data.code === "compacted") lastId = null;
      else if (data.resume_after) lastId = String(data.resume_after);
      return `${data.code}: ${data.message}`;
    }
    if (event.id !== null) lastId = event.id;
    onEvent(event.type, data);
    return null;
  }

  run();
  return { stop() { stopped = true; controller?.abort(); } };
}
