// A minimal React page on useChat() against chat-relay: the AI SDK's default transport,
// `resume: true` (a reload mid-answer carries on), a Stop that stops the model too, and
// images and PDFs attached the AI SDK's way (`sendMessage({ text, files })`: data URLs), and
// a client tool: `local_time`, declared to the relay through the transport's `body`, run
// here by `onToolCall` + `addToolOutput`, its result sent back by `sendAutomaticallyWhen`.
// The relay's address comes from `?relay=` (default: this page's own origin).
import { useChat } from "@ai-sdk/react";
import {
  DefaultChatTransport,
  generateId,
  getToolName,
  isToolUIPart,
  lastAssistantMessageIsCompleteWithToolCalls,
} from "ai";
import { useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";

const relay = new URLSearchParams(location.search).get("relay") ?? "";
const api = `${relay}/api/chat`;

// One chat per tab session: its id names the answer on the relay (16 random symbols).
function chatId() {
  let id = sessionStorage.getItem("chat-id");
  if (!id) {
    id = generateId();
    sessionStorage.setItem("chat-id", id);
  }
  return id;
}

// What was asked, and finished answers, survive a reload (without attached files: session
// storage is small); a running answer is replayed by the relay from its first chunk, so it
// is not kept here.
function saved() {
  return JSON.parse(sessionStorage.getItem("chat-messages") ?? "[]");
}

// The relay's tools are plain JSON Schema (no zod here): the relay passes them to Claude.
const TOOLS = [
  {
    name: "local_time",
    description: "The user's current local date, time and time zone, from their browser.",
    input_schema: { type: "object", properties: {} },
  },
];

// Each upstream response of an answer is a step (`step-start`): a model that keeps calling
// the tool cannot keep the page sending forever (the first answer and 5 continuations).
const MAX_STEPS = 6;

function steps(messages) {
  return messages.at(-1).parts.filter((part) => part.type === "step-start").length;
}

function localTime() {
  const now = new Date();
  return {
    iso: now.toISOString(),
    local: now.toLocaleString("en-US"),
    time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  };
}

// A tool part as it goes: its input streaming in, then complete, then its output (or error).
// Tools run server-side (providerExecuted: Anthropic's, the relay's MCP tools) show alike.
function ToolCard({ part }) {
  return (
    <div className="tool" data-state={part.state}>
      <b className="tool-name">{getToolName(part)}</b>{" "}
      <span className="tool-state">{part.providerExecuted ? "run server-side" : part.state}</span>
      {part.input !== undefined && <pre className="tool-input">{JSON.stringify(part.input)}</pre>}
      {part.state === "output-available" && (
        <pre className="tool-output">{JSON.stringify(part.output)}</pre>
      )}
      {part.state === "output-error" && <p className="tool-error">{part.errorText}</p>}
    </div>
  );
}

function Part({ part }) {
  if (part.type === "text") return <span>{part.text}</span>;
  if (isToolUIPart(part)) return <ToolCard part={part} />;
  return null;
}

function Chat() {
  const [id] = useState(chatId);
  const transport = useMemo(
    () => new DefaultChatTransport({ api, body: { resumable: true, tools: TOOLS } }),
    [],
  );
  const { messages, sendMessage, addToolOutput, stop, status, error } = useChat({
    id,
    messages: saved(),
    transport,
    resume: true,
    // Once every call of the answer's last step has its output, send them back: the relay
    // turns them into tool_result blocks and the answer continues in the same message.
    sendAutomaticallyWhen: ({ messages }) =>
      lastAssistantMessageIsCompleteWithToolCalls({ messages }) && steps(messages) < MAX_STEPS,
    onToolCall({ toolCall }) {
      // Not awaited: the AI SDK's advice, since addToolOutput waits for the stream's jobs.
      if (toolCall.toolName === "local_time") {
        addToolOutput({ tool: "local_time", toolCallId: toolCall.toolCallId, output: localTime() });
      } else {
        const errorText = `This page has no tool named ${toolCall.toolName}.`;
        addToolOutput({ state: "output-error", toolCallId: toolCall.toolCallId, errorText });
      }
    },
  });
  const [input, setInput] = useState("");
  const files = useRef(null);
  const busy = status === "submitted" || status === "streaming";

  useEffect(() => {
    const last = messages.at(-1);
    const keep = busy && last?.role === "assistant" ? messages.slice(0, -1) : messages;
    const light = keep.map((m) => ({ ...m, parts: m.parts.filter((p) => p.type !== "file") }));
    sessionStorage.setItem("chat-messages", JSON.stringify(light));
  }, [messages, busy]);

  // stop() only closes this connection; the DELETE ends the answer on the relay.
  const stopAll = () => {
    stop();
    fetch(`${api}/${id}/stream`, { method: "DELETE" });
  };

  return (
    <main>
      {messages.map((message) => (
        <div key={message.id} className={`message ${message.role}`}>
          {message.parts
            .filter((part) => part.type === "file" && part.mediaType.startsWith("image/"))
            .map((part, i) => <img key={i} className="thumb" src={part.url} alt={part.filename} />)}
          {message.parts.map((part, i) => <Part key={i} part={part} />)}
        </div>
      ))}
      {error && <p className="error">{error.message}</p>}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          const attached = files.current.files;
          if (input.trim() || attached.length) sendMessage({ text: input, files: attached });
          setInput("");
          files.current.value = "";
        }}
      >
        <input
          id="prompt"
          aria-label="Message"
          value={input}
          onChange={(event) => setInput(event.target.value)}
        />
        <input
          id="files"
          ref={files}
          type="file"
          multiple
          aria-label="Attach images or PDFs"
          accept="image/png,image/jpeg,image/gif,image/webp,application/pdf"
        />
        <button type="submit" disabled={busy}>Send</button>
        <button type="button" id="stop" onClick={stopAll} disabled={!busy}>Stop</button>
      </form>
      <p id="status">{status}</p>
    </main>
  );
}

createRoot(document.getElementById("root")).render(<Chat />);
