// Thinking, on request: the Think toggle (kept for next time), and an answer's thinking shown
// live in a section that folds away once the answer starts, saying how long it took.
const KEY = "chat-relay:think";

export function setUpThinkToggle(checkbox) {
  checkbox.checked = localStorage.getItem(KEY) === "1";
  checkbox.addEventListener("change", () =>
    localStorage.setItem(KEY, checkbox.checked ? "1" : "0"),
  );
}

// A thinking delta arrived for `turn` (an answer).
export function addThought(turn, text) {
  if (turn.thinking === undefined) {
    turn.thinking = "";
    turn.thinkingFrom = Date.now();
  } else if (turn.thoughtMs !== undefined) {
    // Thinking again after words (the next step of a tool loop): a new paragraph, and the
    // clock goes on from what it showed, the time between not counted.
    turn.thinking += "\n\n";
    turn.thinkingFrom = Date.now() - turn.thoughtMs;
    turn.thoughtMs = undefined;
  }
  turn.thinking += text;
}

// The answer's first text: the thinking is over.
export function thinkingDone(turn) {
  if (turn.thinking !== undefined && turn.thoughtMs === undefined) {
    turn.thoughtMs = Date.now() - turn.thinkingFrom;
  }
}

// Bring `details` (the answer's thinking section) up to date with `turn`.
export function renderThinking(details, turn) {
  details.hidden = !turn.thinking;
  if (!turn.thinking) return;
  const [summary, body] = details.children;
  const seconds = turn.thoughtMs === undefined ? null : (turn.thoughtMs / 1000).toFixed(1);
  summary.textContent = seconds === null ? "Thinking…" : `Thought for ${seconds} s`;
  body.textContent = turn.thinking;
  // Open while it thinks; folded once the answer starts, unless the reader opened it.
  if (details.dataset.touched !== "1") details.open = seconds === null;
}

export function thinkingSection() {
  const details = document.createElement("details");
  details.className = "thinking";
  details.hidden = true;
  const summary = document.createElement("summary");
  const body = document.createElement("div");
  body.className = "thought";
  details.append(summary, body);
  summary.addEventListener("click", () => (details.dataset.touched = "1"));
  return details;
}
