// The chat page: a conversation, streamed answers, Stop, Retry, and nothing else.
import {
  attaching,
  contentOf,
  filesView,
  setUpAttachments,
  takeAttached,
  withoutData,
} from "./attachments.js";
import { renderMarkdown } from "./markdown.js";
import { chosenModel, setUpModels } from "./models.js";
import { addCitation, renderSources, sourcesSection } from "./sources.js";
import { readEvents } from "./sse.js";
import {
  addThought,
  renderThinking,
  setUpThinkToggle,
  thinkingDone,
  thinkingSection,
} from "./thinking.js";
import { TOOLS, notRun, pieces, runCalls, sentTurns, toolCard, toolFrame } from "./tools.js";

const STORE = "chat-relay:conversation";
const TOKEN = "chat-relay:token"; // sessionStorage: this tab only
const $ = (id) => document.getElementById(id);
const ui = {
  main: $("conversation"),
  list: $("messages"),
  empty: $("empty"),
  form: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  newChat: $("new-chat"),
  demo: $("demo-notice"),
  think: $("think"),
  tokenDialog: $("token-dialog"),
  token: $("token"),
};
let needsToken = false; // from /api/config

// A turn: {role: "user" | "assistant", text, files (a user's: attachments.js), status: "streaming" | "done" | "stopped" | "error",
// usage, error}. A resumable answer also keeps its streamId and the id of the last frame it
// shows (lastId), saved together with its text: a reload mid-answer resumes it from there.
// With tools, an answer may take several requests (steps): it also keeps its tool cards
// (tools: tools.js), its sources (sources.js), each step that ended in tool calls with the
// results sent back (steps: [{content, results}]), where the running step began (mark), and
// the last step's content (done.content: what to send back as the assistant turn).
let turns = load();
let controller = null; // the AbortController of the answer streaming now
let streaming = null; // that answer's turn
let canResume = true; // from /api/config
const views = new Map(); // turn -> its <li>
const RESUME_TRIES = 6; // 0.25 s doubling to 8 s: well inside the relay's resume window
// Tool rounds per question: a model that keeps calling cannot keep the page asking forever.
const MAX_ROUNDS = 5;

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORE));
    if (!Array.isArray(stored)) return [];
    return stored.map((t) =>
      t.status === "streaming" && !t.streamId ? { ...t, status: "stopped" } : t,
    );
  } catch {
    return [];
  }
}

// `waiting` (calls about to run) is not kept: an answer reloaded then ends with its text,
// never with calls that have no results (the relay would refuse the conversation).
function save() {
  const replacer = (key, value) => (key === "waiting" ? undefined : withoutData(key, value));
  try {
    localStorage.setItem(STORE, JSON.stringify(turns, replacer));
  } catch (err) {
    // Over the quota (a few MB: server tools' results are kept whole to be sent back): the
    // conversation goes on in this tab; a reload shows the last one that fitted.
    console.warn("chat-relay: the conversation is too large to keep", err);
  }
}

// What the model sees: every user turn and every answer (its tool steps, and its content or
// a stopped answer's partial text); failed answers are left out, so a failure never
// corrupts the thread.
function history() {
  return turns.flatMap((t) => {
    if (t.role === "user") return [{ role: "user", content: contentOf(t) }];
    return t.status === "error" ? [] : sentTurns(t);
  });
}

// ---- rendering --------------------------------------------------------------------

function mount(turn) {
  const li = document.createElement("li");
  li.className = `message ${turn.role}`;
  const who = document.createElement("h3");
  who.className = "visually-hidden";
  who.textContent = turn.role === "user" ? "You said" : "Claude answered";
  const body = document.createElement("div");
  body.className = "body";
  if (turn.role === "assistant") body.setAttribute("aria-live", "polite");
  const meta = document.createElement("div");
  meta.className = "meta";
  li.append(who, thinkingSection(), body, sourcesSection(), meta);
  ui.list.append(li);
  views.set(turn, li);
  ui.empty.hidden = true;
  render(turn);
}

function render(turn) {
  const li = views.get(turn);
  if (!li) return;
  const stickToBottom = isNearBottom();
  const [, thinking, body, sources, meta] = li.children;
  li.dataset.status = turn.status || "done";
  if (turn.role === "user") {
    body.replaceChildren(...(turn.files?.length ? [filesView(turn)] : []), turn.text);
  } else {
    renderThinking(thinking, turn);
    const live = turn.status === "streaming";
    body.replaceChildren(
      ...pieces(turn).map((piece) => (piece.tool ? toolCard(piece.tool, live) : prose(piece.text))),
    );
    renderSources(sources, turn);
    // Screen readers hear the answer once it is complete, not every fragment.
    body.setAttribute("aria-busy", String(turn.status === "streaming"));
  }
  meta.replaceChildren(...metaFor(turn));
  if (stickToBottom) window.scrollTo(0, document.body.scrollHeight);
}

// Model text, rendered as Markdown (markdown.js sanitizes it).
function prose(text) {
  const div = document.createElement("div");
  div.className = "text";
  div.innerHTML = renderMarkdown(text);
  for (const pre of div.querySelectorAll("pre")) addCopyButton(pre);
  return div;
}

function metaFor(turn) {
  if (turn.role === "user") return [];
  if (turn.status === "streaming") return [span("typing", "Answering…")];
  const note = turn.note ? [span("note", turn.note)] : [];
  if (turn.status === "stopped") return [span("stopped", "Stopped.")];
  if (turn.status === "error") {
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => retryTurn(turn));
    return [span("error", turn.error), retry];
  }
  const u = turn.usage;
  if (!u) return note;
  // Input is fresh, read from the prompt cache, or written to it: all of it was sent.
  const cached = u.cache_read_input_tokens ?? 0;
  const input = (u.input_tokens ?? 0) + cached + (u.cache_creation_input_tokens ?? 0);
  const cachedNote = cached ? ` (${cached} cached)` : "";
  return [...note, span("usage", `${input} tokens in${cachedNote} · ${u.output_tokens ?? 0} out`)];
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  if (className === "error") el.setAttribute("role", "alert");
  return el;
}

function addCopyButton(pre) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy code");
  button.addEventListener("click", async () => {
    const code = pre.querySelector("code") ?? pre;
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "Copied";
  });
  pre.append(button);
}

// Deltas can arrive far faster than the screen refreshes: render once per frame.
const pending = new Set();
function scheduleRender(turn) {
  if (pending.size === 0) requestAnimationFrame(flush);
  pending.add(turn);
}
function flush() {
  for (const turn of pending) render(turn);
  pending.clear();
}

function isNearBottom() {
  return window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
}

function renderAll() {
  ui.list.replaceChildren();
  views.clear();
  for (const turn of turns) mount(turn);
  ui.empty.hidden = turns.length > 0;
}

function setStreaming(on) {
  ui.send.disabled = on;
  ui.stop.hidden = !on;
  ui.send.hidden = on;
  if (!on && (document.activeElement === ui.stop || document.activeElement === document.body)) {
    ui.prompt.focus();
  }
}

// ---- talking to the relay ---------------------------------------------------------

async function describeHttpError(response, answer) {
  let message = "";
  let type = "";
  try {
    ({ message, type } = (await response.json()).error);
  } catch {
    // not our JSON error: a proxy in between, say
  }
  if (type === "server_shutdown") {
    return "The relay is restarting. Try again in a moment.";
  }
  if (type === "resume_unavailable") {
    canResume = false; // the next ask goes without
    return "Answers cannot be resumed right now. Retry to ask without.";
  }
  if (response.status === 404 && answer.streamId) {
    return "The answer was lost with the connection. Retry to ask again.";
  }
  switch (response.status) {
    case 401:
      sessionStorage.removeItem(TOKEN);
      needsToken = true;
      return "The access token was refused. Retry to enter it again.";
    case 429: {
      const after = response.headers.get("retry-after");
      return after ? `Rate limited: try again in ${after} s.` : "Rate limited: try again shortly.";
    }
    case 503:
      return "Claude is overloaded right now. Try again in a moment.";
    case 502:
      return "The upstream service is unreachable. Try again later.";
    case 504:
      return "The upstream took too long to answer. Try again.";
    default:
      return `The request was refused (${response.status}): ${message || response.statusText}`;
  }
}

function describeFrameError(error) {
  switch (error.type) {
    case "overloaded_error":
      return "Claude became overloaded mid-answer. Try again in a moment.";
    case "timeout_error":
      return "The upstream went silent mid-answer.";
    case "rate_limit_error":
      return "Rate limited mid-answer. Try again shortly.";
    case "server_shutdown":
      return "The relay restarted mid-answer. Retry to ask again.";
    default:
      return `The answer failed: ${error.message}`;
  }
}

// The relay's token, asked for once per tab when the relay says it needs one.
function askForToken() {
  return new Promise((resolve) => {
    ui.token.value = "";
    ui.tokenDialog.addEventListener(
      "close",
      () => {
        const token = ui.tokenDialog.returnValue === "ok" ? ui.token.value.trim() : "";
        if (token) sessionStorage.setItem(TOKEN, token);
        resolve(token);
      },
      { once: true },
    );
    ui.tokenDialog.showModal();
  });
}

async function authHeaders() {
  if (!needsToken) return {};
  const token = sessionStorage.getItem(TOKEN) || (await askForToken());
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function ask() {
  const answer = { role: "assistant", text: "", status: "streaming" };
  turns.push(answer);
  mount(answer);
  await converse(answer, post());
}

// The conversation so far (this answer's tool steps too), with the page's tools.
function post() {
  const body = JSON.stringify({
    messages: history(),
    model: chosenModel(),
    thinking: ui.think.checked || undefined,
    resumable: canResume || undefined,
    tools: TOOLS,
  });
  return (signal, headers) =>
    fetch("/api/chat", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      signal,
    });
}

// Stream `answer`; while a step ends waiting for the page's tools, run them and ask again
// with their results: the continuation streams into the same answer.
async function converse(answer, open) {
  for (;;) {
    await relay(answer, open);
    const step = answer.waiting;
    delete answer.waiting;
    // Not when stopped, failed, or cleared away by New chat.
    if (!step || answer.status !== "done" || !turns.includes(answer)) return;
    const rounds = answer.steps?.length ?? 0;
    const last = rounds >= MAX_ROUNDS;
    const own = last
      ? notRun(answer, step.content, `Not run: the page stops after ${MAX_ROUNDS} tool rounds.`)
      : runCalls(answer, step.content);
    if (!own.length) {
      // Nothing of the page's to run: nothing to send back, the step ends the answer.
      Object.assign(answer, { content: step.content, relayTurns: step.turns });
      save();
      return;
    }
    // The relay's results (tools it ran in the same step) go first, with the page's own.
    answer.steps = [...(answer.steps ?? []), { ...step, results: [...step.results, ...own] }];
    // The next step is a new stream: a reload from here on shows this one, done.
    answer.mark = { text: answer.text.length, tools: answer.tools?.length ?? 0 };
    delete answer.streamId;
    delete answer.lastId;
    if (last) {
      answer.note = `Stopped after ${MAX_ROUNDS} tool rounds.`;
      render(answer);
      save();
      return;
    }
    answer.status = "streaming";
    render(answer);
    save();
    open = post();
  }
}

// The rest of a resumable answer: the frames after the last one shown.
function resumeFrom(answer) {
  return (signal, headers) => {
    if (answer.lastId) headers["last-event-id"] = answer.lastId;
    else rewind(answer); // replayed from its first frame
    return fetch(`/api/chat/${encodeURIComponent(answer.streamId)}`, { headers, signal });
  };
}

// Back to where the running step began: its frames are about to come again.
function rewind(answer) {
  answer.text = answer.text.slice(0, answer.mark?.text ?? 0);
  answer.tools?.splice(answer.mark?.tools ?? 0);
}

// Stream `answer` from `open(signal, headers)`; when the connection drops mid-answer, a
// resumable one carries on from its last frame (no text twice, no second request upstream).
async function relay(answer, open) {
  setStreaming(true);
  controller = new AbortController();
  streaming = answer;
  const { signal } = controller;
  try {
    for (let tries = 0; ; tries++) {
      let dropped = false;
      try {
        const response = await open(signal, await authHeaders());
        if (!response.ok) {
          fail(answer, await describeHttpError(response, answer));
          return;
        }
        await readAnswer(answer, response);
      } catch (err) {
        if (err.name === "AbortError") throw err;
        dropped = true; // the network, not the relay
      }
      if (answer.status !== "streaming") return;
      if (!dropped) {
        // Closed cleanly before its end: another tab (or a reload) took the answer over.
        fail(answer, "This answer went on in another tab.");
        return;
      }
      if (!answer.streamId || tries >= RESUME_TRIES) {
        fail(answer, answer.text ? "Network connection lost mid-answer." : "Network connection lost.");
        return;
      }
      await sleep(250 * 2 ** tries, signal);
      open = resumeFrom(answer);
    }
  } catch (err) {
    if (err.name === "AbortError") answer.status = "stopped";
    else fail(answer, answer.text ? "Network connection lost mid-answer." : "Network connection lost.");
  } finally {
    controller = null;
    streaming = null;
    pending.delete(answer);
    render(answer);
    setStreaming(false);
    save();
  }
}

async function readAnswer(answer, response) {
  for await (const { event, data, id } of readEvents(response.body)) {
    const payload = JSON.parse(data);
    if (event === "delta") {
      thinkingDone(answer);
      answer.text += payload.text;
      scheduleRender(answer);
    } else if (event === "thinking") {
      addThought(answer, payload.text);
      scheduleRender(answer);
    } else if (event === "start") {
      if (payload.mode === "demo") ui.demo.hidden = false;
      if (payload.stream_id && !answer.streamId) {
        answer.streamId = payload.stream_id;
        save(); // a reload from here on resumes it
      }
    } else if (toolFrame(answer, event, payload)) {
      thinkingDone(answer);
      scheduleRender(answer);
    } else if (event === "citation") {
      addCitation(answer, payload);
      scheduleRender(answer);
    } else if (event === "done") {
      answer.status = "done";
      answer.usage = addUsage(answer.usage, payload.usage);
      // What goes back next time: the relay's own tool steps (turns), the assistant turn
      // (content) and, when it waits for the page's tools, the relay's results to send with
      // the page's own.
      const step = { turns: payload.turns, content: payload.content };
      if (payload.stop_reason === "tool_use" && payload.content) {
        answer.waiting = { ...step, results: payload.tool_results ?? [] };
      } else if (payload.content) {
        answer.content = payload.content;
        answer.relayTurns = payload.turns;
      }
    } else if (event === "error") {
      fail(answer, describeFrameError(payload.error));
    }
    if (id) answer.lastId = id; // with the text it shows: saved together
  }
}

// An answer of several steps was billed for each: the counts add up.
function addUsage(total, usage) {
  if (!total) return usage;
  const sum = { ...total };
  for (const [key, value] of Object.entries(usage ?? {})) {
    if (typeof value === "number") sum[key] = (sum[key] ?? 0) + value;
  }
  return sum;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new DOMException("Stopped", "AbortError"));
      },
      { once: true },
    );
  });
}

function fail(turn, message) {
  turn.status = "error";
  turn.error = message;
}

function retryTurn(turn) {
  if (controller) return;
  turns = turns.filter((t) => t !== turn);
  views.get(turn)?.remove();
  views.delete(turn);
  ask();
}

// Stop stops at once: the relay is told (DELETE), not left to notice a closed connection,
// which a resumable answer outlives.
function stop() {
  const id = streaming?.streamId;
  if (id) {
    const token = needsToken && sessionStorage.getItem(TOKEN);
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    fetch(`/api/chat/${encodeURIComponent(id)}`, { method: "DELETE", headers, keepalive: true })
      .catch(() => {});
  }
  controller?.abort();
}

// ---- wiring ------------------------------------------------------------------------

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.prompt.value.trim();
  if (controller || attaching()) return;
  const files = takeAttached();
  if (!text && !files.length) return;
  const turn = { role: "user", text, files, status: "done" };
  turns.push(turn);
  mount(turn);
  ui.prompt.value = "";
  save();
  ask();
});

ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.form.requestSubmit();
  }
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && controller) stop();
});

ui.stop.addEventListener("click", stop);

ui.newChat.addEventListener("click", () => {
  stop();
  turns = [];
  save();
  renderAll();
  ui.prompt.focus();
});

fetch("/api/config")
  .then((r) => r.json())
  .then((config) => {
    ui.demo.hidden = config.mode !== "demo";
    needsToken = Boolean(config.auth);
    canResume = config.resume !== false;
    setUpModels(document.getElementById("model"), config);
  })
  .catch(() => {})
  .then(() => {
    // An answer that was streaming when the page went away carries on where it stopped.
    const last = turns.at(-1);
    if (last?.status === "streaming") converse(last, resumeFrom(last));
  });

// Whatever the answer shows when the page goes, with the id of its last frame.
window.addEventListener("pagehide", save);

setUpThinkToggle(ui.think);
setUpAttachments({
  button: $("attach"),
  input: $("files"),
  list: $("tray"),
  prompt: ui.prompt,
  message: $("attach-status"),
  dropZone: document.body,
});
renderAll();
ui.prompt.focus();
