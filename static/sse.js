// Server-Sent Events over fetch(): EventSource cannot POST, so the page reads the
// response body itself. TextDecoder in stream mode carries a multi-byte character split
// across two chunks; the parser carries a line or a CRLF split across two chunks.

/**
 * An incremental SSE parser. `feed(text)` any number of times, then `end()`.
 * Calls `onEvent({event, data, id})` per complete event (`id`: the frame's own `id:`, or
 * ""); comments (pings) are skipped.
 */
export function createParser(onEvent) {
  let buffer = "";
  let event = "";
  let data = [];
  let id = "";

  function line(text) {
    if (text === "") {
      if (data.length) onEvent({ event: event || "message", data: data.join("\n"), id });
      event = "";
      data = [];
      id = "";
      return;
    }
    if (text[0] === ":") return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) id = value;
  }

  function drain(final) {
    // A CR at the very end may be half of a CRLF: hold it until more text (or the end).
    const held = !final && buffer.endsWith("\r");
    let text = held ? buffer.slice(0, -1) : buffer;
    text = text.replace(/\r\n?/g, "\n");
    const lines = text.split("\n");
    buffer = lines.pop() + (held ? "\r" : "");
    for (const l of lines) line(l);
  }

  return {
    feed(text) {
      buffer += text;
      drain(false);
    },
    end() {
      if (buffer.endsWith("\r")) drain(true);
    },
  };
}

/** Yield the events of a fetch() response body as they arrive. */
export async function* readEvents(body) {
  const decoder = new TextDecoder();
  const events = [];
  const parser = createParser((e) => events.push(e));
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      while (events.length) yield events.shift();
    }
    parser.feed(decoder.decode());
    parser.end();
    yield* events;
  } finally {
    reader.releaseLock();
  }
}
