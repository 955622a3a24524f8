// The chat page: a conversation, streamed answers, Stop, Retry, and nothing else.
import { renderMarkdown } from "./markdown.js";
import { readEvents } from "./sse.js";

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
  tokenDialog: $("token-dialog"),
  token: $("token"),
};
let needsToken = false; // from /api/config

// A turn: {role: "user" | "assistant", text, status: "streaming" | "done" | "stopped" | "error",
// usage, error}. Only finished state is stored: a reload mid-answer shows it as stopped.
let turns = load();
let controller = null; // the AbortController of the answer streaming now
const views = new Map(); // turn -> its <li>

function load() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORE));
    if (!Array.isArray(stored)) return [];
    return stored.map((t) => (t.status === "streaming" ? { ...t, status: "stopped" } : t));
  } catch {
    return [];
  }
}

function save() {
  localStorage.setItem(STORE, JSON.stringify(turns));
}

// What the model sees: every user turn and every answer that has text (a stopped answer's
// partial text too); failed answers are left out, so a failure never corrupts the thread.
function history() {
  return turns
    .filter((t) => t.role === "user" || (t.status !== "error" && t.text))
    .map((t) => ({ role: t.role, content: t.text }));
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
  li.append(who, body, meta);
  ui.list.append(li);
  views.set(turn, li);
  ui.empty.hidden = true;
  render(turn);
}

function render(turn) {
  const li = views.get(turn);
  if (!li) return;
  const stickToBottom = isNearBottom();
  const [, body, meta] = li.children;
  li.dataset.status = turn.status || "done";
  if (turn.role === "user") {
    body.textContent = turn.text;
  } else {
    body.innerHTML = renderMarkdown(turn.text);
    for (const pre of body.querySelectorAll("pre")) addCopyButton(pre);
    // Screen readers hear the answer once it is complete, not every fragment.
    body.setAttribute("aria-busy", String(turn.status === "streaming"));
  }
  meta.replaceChildren(...metaFor(turn));
  if (stickToBottom) window.scrollTo(0, document.body.scrollHeight);
}

function metaFor(turn) {
  if (turn.role === "user") return [];
  if (turn.status === "streaming") return [span("typing", "Answering…")];
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
  return u ? [span("usage", `${u.input_tokens ?? 0} tokens in · ${u.output_tokens ?? 0} out`)] : [];
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

async function describeHttpError(response) {
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
  const messages = history();
  const answer = { role: "assistant", text: "", status: "streaming" };
  turns.push(answer);
  mount(answer);
  setStreaming(true);
  controller = new AbortController();
  try {
    const headers = { "content-type": "application/json", ...(await authHeaders()) };
    const response = await fetch("/api/chat", {
      method: "POST",
      headers,
      body: JSON.stringify({ messages }),
      signal: controller.signal,
    });
    if (!response.ok) {
      fail(answer, await describeHttpError(response));
      return;
    }
    for await (const { event, data } of readEvents(response.body)) {
      const payload = JSON.parse(data);
      if (event === "delta") {
        answer.text += payload.text;
        scheduleRender(answer);
      } else if (event === "start") {
        if (payload.mode === "demo") ui.demo.hidden = false;
      } else if (event === "done") {
        answer.status = "done";
        answer.usage = payload.usage;
      } else if (event === "error") {
        fail(answer, describeFrameError(payload.error));
      }
    }
    if (answer.status === "streaming") fail(answer, "The connection closed before the answer finished.");
  } catch (err) {
    if (err.name === "AbortError") answer.status = "stopped";
    else fail(answer, answer.text ? "Network connection lost mid-answer." : "Network connection lost.");
  } finally {
    controller = null;
    pending.delete(answer);
    render(answer);
    setStreaming(false);
    save();
  }
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

function stop() {
  controller?.abort();
}

// ---- wiring ------------------------------------------------------------------------

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || controller) return;
  const turn = { role: "user", text, status: "done" };
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
  })
  .catch(() => {});

renderAll();
ui.prompt.focus();
