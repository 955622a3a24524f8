// A minimal React page on useChat() against chat-relay: the AI SDK's default transport,
// `resume: true` (a reload mid-answer carries on), a Stop that stops the model too, and
// images and PDFs attached the AI SDK's way (`sendMessage({ text, files })`: data URLs).
// The relay's address comes from `?relay=` (default: this page's own origin).
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, generateId } from "ai";
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

function text(message) {
  return message.parts
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}

function Chat() {
  const [id] = useState(chatId);
  const transport = useMemo(
    () => new DefaultChatTransport({ api, body: { resumable: true } }),
    [],
  );
  const { messages, sendMessage, stop, status, error } = useChat({
    id,
    messages: saved(),
    transport,
    resume: true,
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
        <p key={message.id} className={`message ${message.role}`}>
          {message.parts
            .filter((part) => part.type === "file" && part.mediaType.startsWith("image/"))
            .map((part, i) => <img key={i} className="thumb" src={part.url} alt={part.filename} />)}
          {text(message)}
        </p>
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
