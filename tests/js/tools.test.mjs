// The page's tool bookkeeping (static/tools.js, static/sources.js) without a browser: what
// goes back to the relay, in which order the answer reads, which URLs may become links.
// Run: node --test tests/js
import assert from "node:assert/strict";
import { test } from "node:test";
import { addCitation, webUrl } from "../../static/sources.js";
import { localTime, pieces, runCalls, sentTurns, toolFrame, TOOLS } from "../../static/tools.js";

function answerWith(frames) {
  const turn = { role: "assistant", text: "", status: "streaming" };
  for (const [event, payload] of frames) {
    if (event === "delta") turn.text += payload.text;
    else assert.ok(toolFrame(turn, event, payload), event);
  }
  return turn;
}

const CALL = [
  ["delta", { text: "Let me look. " }],
  ["tool_start", { id: "t1", name: "local_time", run_by: "caller" }],
  ["tool_delta", { id: "t1", json: "{" }],
  ["tool_delta", { id: "t1", json: "}" }],
  ["tool_call", { id: "t1", name: "local_time", run_by: "caller", input: {} }],
];

test("a card sits where the call came in the text", () => {
  const turn = answerWith([...CALL, ["delta", { text: "It is late." }]]);
  assert.equal(turn.tools[0].json, "{}");
  assert.deepEqual(
    pieces(turn).map((p) => p.text ?? `[${p.tool.name}]`),
    ["Let me look. ", "[local_time]", "It is late."],
  );
  assert.deepEqual(pieces({ text: "" }), [{ text: "" }]);
});

test("the page's own tool runs; others, and calls with bad input, get an error", () => {
  const turn = answerWith([
    ...CALL,
    ["tool_start", { id: "t2", name: "weather", run_by: "caller" }],
    ["tool_call", { id: "t2", name: "weather", run_by: "caller", input: {} }],
    ["tool_start", { id: "t3", name: "local_time", run_by: "caller" }],
    ["tool_call", { id: "t3", name: "local_time", input: { INVALID_JSON: "{" }, error: "bad" }],
  ]);
  const content = [
    { type: "text", text: "Let me look. " },
    ...["t1", "t2", "t3"].map((id, n) => ({
      type: "tool_use",
      id,
      name: n === 1 ? "weather" : "local_time",
      input: {},
    })),
  ];
  const [time, weather, invalid] = runCalls(turn, content);
  assert.equal(time.tool_use_id, "t1");
  assert.equal(time.is_error, undefined);
  assert.deepEqual(Object.keys(JSON.parse(time.content)), Object.keys(localTime()));
  assert.deepEqual(weather, {
    type: "tool_result",
    tool_use_id: "t2",
    content: "This page has no tool named weather.",
    is_error: true,
  });
  assert.equal(invalid.is_error, true);
  assert.equal(turn.tools[0].result, time.content);
  // What goes back: the step, its results, then the rest of the answer.
  turn.steps = [{ content, results: [time, weather, invalid] }];
  turn.mark = { text: turn.text.length, tools: 3 };
  assert.deepEqual(sentTurns(turn).map((t) => t.role), ["assistant", "user"]);
  turn.text += "Partial";
  assert.deepEqual(sentTurns(turn).at(-1), { role: "assistant", content: "Partial" });
  turn.content = [{ type: "text", text: "Partial answer." }];
  assert.deepEqual(sentTurns(turn).at(-1), { role: "assistant", content: turn.content });
  // Blank text blocks stay behind (the relay refuses them); content of nothing at all is
  // no turn.
  turn.steps[0].content = [{ type: "text", text: "\n\n" }, ...content.slice(1)];
  assert.deepEqual(sentTurns(turn)[0].content, content.slice(1));
  turn.content = [];
  turn.text = turn.text.slice(0, turn.mark.text);
  assert.equal(sentTurns(turn).length, 2);
});

test("local_time is declared with no required input", () => {
  const [tool] = TOOLS;
  assert.equal(tool.name, "local_time");
  assert.deepEqual(tool.input_schema, { type: "object", properties: {} });
  const now = localTime(new Date(2026, 0, 2, 3, 4, 5));
  assert.equal(now.date, "2026-01-02");
  assert.equal(now.time, "03:04:05");
  assert.match(now.utc_offset, /^[+-]\d\d:\d\d$/);
});

test("only http and https URLs become sources, once each", () => {
  for (const bad of ["javascript:alert(1)", "data:text/html,x", "/relative", "", null, 7]) {
    assert.equal(webUrl(bad), null, String(bad));
  }
  assert.equal(webUrl("http://example.com/"), "http://example.com/");
  const turn = {};
  addCitation(turn, { url: "https://a.example/x", title: "A" });
  addCitation(turn, { url: "https://a.example/x", title: "A again" });
  addCitation(turn, { url: "javascript:alert(1)", title: "evil" });
  addCitation(turn, { url: null, title: "a document", cited_text: "…" });
  assert.deepEqual(turn.sources, [{ url: "https://a.example/x", title: "A" }]);
});

test("the relay's own calls are not the page's to answer, and its steps go back first", () => {
  const turn = answerWith([
    ["tool_start", { id: "r1", name: "mcp__t__echo", run_by: "relay" }],
    ["tool_result", { id: "r1", name: "mcp__t__echo", run_by: "relay", output: [] }],
    ...CALL,
  ]);
  const content = [
    { type: "tool_use", id: "r1", name: "mcp__t__echo", input: {} },
    { type: "tool_use", id: "t1", name: "local_time", input: {} },
  ];
  assert.deepEqual(runCalls(turn, content).map((r) => r.tool_use_id), ["t1"]);
  const relayStep = [
    { role: "assistant", content: [{ type: "tool_use", id: "r0", name: "x", input: {} }] },
    { role: "user", content: [{ type: "tool_result", tool_use_id: "r0", content: "ok" }] },
  ];
  turn.steps = [{ turns: relayStep, content, results: [] }];
  turn.content = [{ type: "text", text: "Done." }];
  turn.relayTurns = relayStep;
  assert.deepEqual(
    sentTurns(turn).map((t) => t.role),
    ["assistant", "user", "assistant", "user", "assistant", "user", "assistant"],
  );
});
