// Tools: each call Claude makes shows as a compact card in the answer (its name, its input
// as it streams, its result, who ran it), and the page's own tool, local_time, runs here in
// the browser. Inputs and results come from the model and its tools: untrusted, so they
// reach the DOM as text only (links through sources.js: http and https only).
import { link } from "./sources.js";

const RUN_BY = {
  caller: "run in your browser",
  anthropic: "run by Anthropic",
  relay: "run on the server",
};

const pad = (n) => String(n).padStart(2, "0");

// The browser's clock and time zone: what only the page can know.
export function localTime(now = new Date()) {
  const offset = -now.getTimezoneOffset();
  const hours = pad(Math.floor(Math.abs(offset) / 60));
  return {
    date: `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`,
    time: `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`,
    weekday: now.toLocaleDateString("en-US", { weekday: "long" }),
    time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
    utc_offset: `${offset < 0 ? "-" : "+"}${hours}:${pad(Math.abs(offset) % 60)}`,
  };
}

const LOCAL = {
  local_time: {
    definition: {
      name: "local_time",
      description:
        "The user's current local date, time, weekday and time zone, read from the clock " +
        "of their web browser. Takes no input.",
      input_schema: { type: "object", properties: {} },
    },
    run: () => JSON.stringify(localTime()),
  },
};

// What every chat declares in `tools`.
export const TOOLS = Object.values(LOCAL).map((tool) => tool.definition);

// ---- frames -------------------------------------------------------------------------

// A tool frame for `turn` (an answer); false for any other event. A card remembers where
// in the text it came (`at`), so the answer reads in order: words, the call, more words.
export function toolFrame(turn, event, payload) {
  if (event === "tool_start") {
    turn.tools ??= [];
    const { id, name, run_by: runBy } = payload;
    turn.tools.push({ id, name, runBy, json: "", at: turn.text.length });
    return true;
  }
  const tool = turn.tools?.find((t) => t.id === payload.id);
  if (event === "tool_delta") {
    if (tool) tool.json += payload.json;
  } else if (event === "tool_call") {
    if (tool) Object.assign(tool, { input: payload.input, error: payload.error });
  } else if (event === "tool_result") {
    if (tool) Object.assign(tool, { output: payload.output, error: payload.error });
  } else {
    return false;
  }
  return true;
}

// The `tool_result` blocks answering the caller's calls in `content` (an assistant turn
// that ended waiting for them): the page's own tools run, anything else is an error Claude
// can read. Each card shows what was sent back. Calls the relay ran are not the page's: the
// relay hands their results over itself (done.tool_results).
export function runCalls(turn, content) {
  return callsIn(turn, content).map((call) => {
    const tool = turn.tools?.find((t) => t.id === call.id);
    const local = LOCAL[call.name];
    let text;
    let isError = true;
    if (tool?.error) text = `Not run: ${tool.error}`;
    else if (!local) text = `This page has no tool named ${call.name}.`;
    else {
      try {
        text = local.run(call.input);
        isError = false;
      } catch (err) {
        text = `${call.name} failed: ${err.message}`;
      }
    }
    return answered(tool, call.id, text, isError);
  });
}

// Results for calls the page will not run (it stopped asking), so the conversation still
// pairs every call with a result.
export function notRun(turn, content, why) {
  return callsIn(turn, content).map((call) =>
    answered(turn.tools?.find((t) => t.id === call.id), call.id, why, true),
  );
}

function callsIn(turn, content) {
  const runBy = (id) => turn.tools?.find((t) => t.id === id)?.runBy ?? "caller";
  return content.filter((block) => block.type === "tool_use" && runBy(block.id) === "caller");
}

function answered(tool, id, text, isError) {
  if (tool) Object.assign(tool, { result: text, isError });
  const result = { type: "tool_result", tool_use_id: id, content: text };
  return isError ? { ...result, is_error: true } : result;
}

// ---- the conversation ---------------------------------------------------------------

// An answer as the turns to send back: each step that ended in the page's tool calls (the
// turns of the relay's own tool steps before it, its content as the relay handed it out,
// then the results), then the last step (the same, or the partial text of a stopped one).
export function sentTurns(turn) {
  const turns = [];
  for (const step of turn.steps ?? []) {
    turns.push(...(step.turns ?? []), { role: "assistant", content: sendable(step.content) });
    turns.push({ role: "user", content: step.results });
  }
  const content = sendable(turn.content ?? []);
  if (content.length) {
    return [...turns, ...(turn.relayTurns ?? []), { role: "assistant", content }];
  }
  const partial = turn.text.slice(turn.mark?.text ?? 0);
  return partial ? [...turns, { role: "assistant", content: partial }] : turns;
}

// Blank text blocks (a model may open one before a call) are refused by the relay and the
// API alike; they say nothing, so they stay behind.
function sendable(content) {
  return content.filter((block) => block.type !== "text" || block.text.trim());
}

// ---- rendering ----------------------------------------------------------------------

// The answer in reading order: [{text} | {tool}].
export function pieces(turn) {
  const out = [];
  let from = 0;
  for (const tool of turn.tools ?? []) {
    if (tool.at > from) out.push({ text: turn.text.slice(from, tool.at) });
    out.push({ tool });
    from = Math.max(from, tool.at);
  }
  if (turn.text.length > from || !out.length) out.push({ text: turn.text.slice(from) });
  return out;
}

// A card for one call; `live`: the answer is still streaming (a call without a result is
// then under way, not abandoned).
export function toolCard(tool, live) {
  const card = element("div", "tool");
  card.dataset.runBy = tool.runBy;
  card.setAttribute("role", "group");
  card.setAttribute("aria-label", `Tool call: ${tool.name}`);
  const head = element("div", "tool-head");
  head.append(
    element("span", "tool-name", tool.name),
    element("span", "tool-by", RUN_BY[tool.runBy] ?? tool.runBy),
    element("span", "tool-state", stateOf(tool, live)),
  );
  card.append(head, element("pre", "tool-input", inputText(tool)));
  const outcome = outcomeView(tool);
  if (outcome) card.append(outcome);
  return card;
}

function stateOf(tool, live) {
  if (tool.error || tool.isError) return "failed";
  if (tool.output !== undefined || tool.result !== undefined) return "done";
  if (!live) return "not finished";
  return tool.input === undefined ? "calling…" : "running…";
}

// As it streams, the JSON text so far; once complete, the parsed input, pretty.
function inputText(tool) {
  if (tool.input === undefined) return tool.json || "…";
  return JSON.stringify(tool.input, null, 2);
}

function outcomeView(tool) {
  if (tool.result !== undefined) {
    return element("pre", tool.isError ? "tool-output error" : "tool-output", pretty(tool.result));
  }
  if (tool.error) return element("p", "tool-output error", tool.error);
  const output = tool.output;
  if (output === undefined || output === null) return null;
  if (Array.isArray(output) && !output.every((item) => item?.url !== undefined)) {
    return blocksView(output); // a relay tool's: [{type: "text", text} | {type: "image", ...}]
  }
  if (Array.isArray(output)) {
    // web search: [{url, title, page_age}]
    const list = element("ul", "tool-output tool-links");
    for (const page of output) {
      const item = element("li");
      item.append(link(page?.url, page?.title));
      if (page?.page_age) item.append(element("span", "tool-age", ` · ${page.page_age}`));
      list.append(item);
    }
    return list;
  }
  if (typeof output === "object" && "url" in output) {
    // web fetch: {url, title}
    const box = element("p", "tool-output");
    box.append(link(output.url, output.title));
    return box;
  }
  if (typeof output === "object" && "return_code" in output) {
    // code execution: {stdout, stderr, return_code}
    const box = element("div", "tool-output");
    if (output.stdout) box.append(element("pre", "", output.stdout));
    if (output.stderr) box.append(element("pre", "error", output.stderr));
    box.append(element("p", "tool-age", `exit code ${output.return_code}`));
    return box;
  }
  return element("pre", "tool-output", JSON.stringify(output, null, 2));
}

function blocksView(blocks) {
  const box = element("div", "tool-output");
  for (const block of blocks) {
    if (block?.type === "text") box.append(element("pre", "", block.text));
    else if (block?.type === "image") {
      box.append(element("p", "tool-age", `[an image: ${block.media_type}, ${block.bytes} bytes]`));
    } else box.append(element("pre", "", JSON.stringify(block, null, 2)));
  }
  return box;
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function element(tag, className = "", text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = String(text);
  return el;
}
