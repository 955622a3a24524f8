// The AI SDK's own client against the relay: `node client.mjs <relay url> <action> <chat id>
// [text] [chunks]`, printing one JSON line. Actions:
//   send    send a user message; the message readUIMessageStream builds from the answer
//   drop    send a resumable one and abort after <chunks> chunks: the chunks read
//   leave   the same, not resumable (what useChat's stop() does)
//   think   send one with `thinking: true`: the message, its reasoning too
//   resume  reconnectToStream: the message rebuilt from the replay, or {"none": true} (204)
//   tool    useChat's own loop (AbstractChat, as useChat runs it): declares `local_time`,
//           answers its call with onToolCall + addToolOutput, and sends the result back by
//           sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls; the messages
import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithToolCalls,
  readUIMessageStream,
} from "ai";

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
    parts: last.parts.filter((p) => p.type !== "text" && p.type !== "reasoning"),
  };
}

// useChat's state, kept in memory instead of React's.
class Chat extends AbstractChat {
  constructor(init) {
    const state = {
      status: "ready",
      error: undefined,
      messages: [],
      pushMessage: (m) => state.messages.push(m),
      popMessage: () => state.messages.pop(),
      replaceMessage: (i, m) => (state.messages[i] = m),
      snapshot: (thing) => structuredClone(thing),
    };
    super({ ...init, state });
  }
}

async function toolLoop() {
  const LOCAL_TIME = {
    name: "local_time",
    description: "The user's local date, time and time zone.",
    input_schema: { type: "object", properties: {} },
  };
  let requests = 0;
  const chat = new Chat({
    id: chatId,
    transport: new DefaultChatTransport({
      api: `${url}/api/chat`,
      body: { tools: [LOCAL_TIME] },
      fetch: (input, init) => {
        requests += 1;
        return fetch(input, init);
      },
    }),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onToolCall: ({ toolCall }) => {
      if (toolCall.dynamic || toolCall.toolName !== "local_time") return;
      chat.addToolOutput({
        tool: "local_time",
        toolCallId: toolCall.toolCallId,
        output: { time: "12:34", zone: "Europe/Paris" },
      });
    },
  });
  await chat.sendMessage({ text });
  // The automatic continuation is a request of its own: wait for it to settle.
  for (let i = 0; i < 100 && chat.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 50));
  return { requests, status: chat.status, error: chat.error?.message, messages: chat.messages };
}

const messages = [{ id: "u1", role: "user", parts: [{ type: "text", text }] }];
let out;
if (action === "tool") {
  out = await toolLoop();
} else if (action === "resume") {
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
