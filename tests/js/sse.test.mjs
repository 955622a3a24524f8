// The page's SSE parser (static/sse.js) on adversarial chunkings. Run: node --test tests/js
import assert from "node:assert/strict";
import { test } from "node:test";
import { createParser, readEvents } from "../../static/sse.js";

const STREAM = [
  ": ping",
  "",
  "id: 7",
  "event: start",
  'data: {"id":"msg_1"}',
  "",
  "id: 8",
  "event: delta",
  'data: {"text":"naïve 日本語 🧑‍💻"}',
  "",
  "event: multi",
  "data: one",
  "data:two",
  "",
  "data: unnamed",
  "",
  "event: done",
  "data: {}",
  "",
  "",
];
const EXPECTED = [
  { event: "start", data: '{"id":"msg_1"}', id: "7" },
  { event: "delta", data: '{"text":"naïve 日本語 🧑‍💻"}', id: "8" },
  { event: "multi", data: "one\ntwo", id: "" },
  { event: "message", data: "unnamed", id: "" },
  { event: "done", data: "{}", id: "" },
];

const bytesOf = (eol) => new TextEncoder().encode(STREAM.join(eol));

// Feed byte chunks through a streaming TextDecoder, as readEvents does.
function parseChunks(chunks) {
  const events = [];
  const parser = createParser((e) => events.push(e));
  const decoder = new TextDecoder();
  for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }));
  parser.feed(decoder.decode());
  parser.end();
  return events;
}

for (const [name, eol] of [["LF", "\n"], ["CRLF", "\r\n"], ["CR", "\r"]]) {
  test(`every split point, ${name}`, () => {
    const bytes = bytesOf(eol);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(parseChunks([bytes.slice(0, cut), bytes.slice(cut)]), EXPECTED, `cut ${cut}`);
    }
  });

  test(`one byte at a time (UTF-8 split mid-character), ${name}`, () => {
    const bytes = bytesOf(eol);
    const chunks = Array.from(bytes, (_, i) => bytes.slice(i, i + 1));
    assert.deepEqual(parseChunks(chunks), EXPECTED);
  });
}

test("random chunkings", () => {
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const bytes = bytesOf("\r\n");
  for (let run = 0; run < 500; run++) {
    const chunks = [];
    for (let i = 0; i < bytes.length; ) {
      const size = 1 + Math.floor(rand() * 12);
      chunks.push(bytes.slice(i, i + size));
      i += size;
    }
    assert.deepEqual(parseChunks(chunks), EXPECTED);
  }
});

test("an incomplete event at the end is dropped", () => {
  assert.deepEqual(parseChunks([new TextEncoder().encode("event: a\ndata: 1\n\nevent: b\ndata: 2\n")]), [
    { event: "a", data: "1", id: "" },
  ]);
});

test("readEvents reads a ReadableStream", async () => {
  const bytes = bytesOf("\n");
  const body = new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.slice(i, i + 7));
      controller.close();
    },
  });
  const events = [];
  for await (const e of readEvents(body)) events.push(e);
  assert.deepEqual(events, EXPECTED);
});
