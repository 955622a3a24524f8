// The AI SDK's own client against the relay: `node client.mjs <relay url> <action> <chat id>
// [text] [chunks]`, printing one JSON line. Actions:
//   send    send a user message; the message readUIMessageStream builds from the answer
//   drop    send a resumable one and abort after <chunks> chunks: the chunks read
//   leave   the same, not resumable (what useChat's stop() does)
//   think   send one with `thinking: true`: the message, its reasoning too
//   resume  reconnectToStream: the message rebuilt from the replay, or {"none": true} (204)
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [url, action, chatId, text = "Hello", chunks = "3"] = process.argv.slice(2);
const transport = new DefaultChatTransport({
  api: `${url}/api/chat`,
  body:
    action === "drop" || action === "resume"
      ? { resumable: true }
      : action === "think"
        ? { thinking: true }
        : {},
});

async function built(stream) {
  let last = null;
  for await (const message of readUIMessageStream({ stream })) last = message;
  const of = (m, type) => m.parts.filter((p) => p.type === type).map((p) => p.text).join("");
  if (!last) return { text: null };
  return {
    text: of(last, "text"),
    reasoning: of(last, "reasoning"),
    metadata: last.metadata,
    id: last.id,
  };
}

const messages = [{ id: "u1", role: "user", parts: [{ type: "text", text }] }];
let out;
if (action === "resume") {
  const stream = await transport.reconnectToStream({ chatId });
  out = stream === null ? { none: true } : await built(stream);
} else {
  const abort = new AbortController();
  const stream = await transport.sendMessages({
    trigger: "submit-message",
    chatId,
    messageId: undefined,
    messages,
    abortSignal: abort.signal,
  });
  if (action === "send" || action === "think") {
    out = await built(stream);
  } else {
    const reader = stream.getReader();
    const seen = [];
    while (seen.length < Number(chunks)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen.push(value.type);
    }
    abort.abort();
    out = { chunks: seen };
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
