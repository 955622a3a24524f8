"""The AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: v1`), so `useChat()`
reads the relay with no glue: `data: <json>` chunks, `start`, then per upstream response a
`start-step`, its parts (thinking on request: `reasoning-start`, `reasoning-delta`s,
`reasoning-end`; `text-start`, one `text-delta` per upstream delta, `text-end`; tool calls:
`tool-input-start`, `tool-input-delta`s, `tool-input-available`, and for the tools the
caller does not run `tool-output-available` or `tool-output-error`; `source-url`s) and a
`finish-step`; then `finish` and `data: [DONE]`. A failure after the start is one `error`
chunk; a stop (DELETE) one `abort` chunk. Keep-alive pings stay SSE comments
(app/response.py): a `data:` ping would fail the client's schema check.

Only the fields of `ai@6.0.0`'s chunk schema: its objects are strict, and one unknown key
fails an older client's whole stream.
"""

from typing import Any

from app.dialect import CALLER, Answer, Call, Dialect
from app.sse import compact_json, quote

_PARTS = {"text": "text", "thinking": "reasoning"}
END = b"data: [DONE]\n\n"
# Upstream stop reasons, as the AI SDK's finish reasons.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content-filter",
    "tool_use": "tool-calls",
}
HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
STEPS = (b'data: {"type":"finish-step"}\n\n', b'data: {"type":"start-step"}\n\n')


def chunk(payload: dict[str, Any]) -> bytes:
    return b"data: " + compact_json(payload) + b"\n\n"


def start(answer: Answer) -> bytes:
    message = answer.message
    metadata = {"model": message.get("model"), "mode": answer.mode}
    # An answer to a conversation ending in the assistant's message (tool outputs added)
    # continues that message: the same id.
    message_id = answer.message_id or message.get("id")
    return chunk({"type": "start", "messageId": message_id, "messageMetadata": metadata})


def opening(answer: Answer, part: str) -> bytes:
    """A part begins (`text`, or `thinking`: a reasoning part), with an id of its own."""
    kind = _PARTS[part]
    answer.part_id = part_id = f"{kind}-{answer.parts}"
    answer.prefix = (
        b'data: {"type":"' + kind.encode() + b'-delta","id":"' + part_id.encode() + b'","delta":'
    )
    return chunk({"type": f"{kind}-start", "id": part_id})


def closing(answer: Answer, part: str, signature: str | None) -> bytes:
    end: dict[str, Any] = {"type": f"{_PARTS[part]}-end", "id": answer.part_id}
    if signature is not None:  # as @ai-sdk/anthropic carries it, for the next turn
        end["providerMetadata"] = {"anthropic": {"signature": signature}}
    return chunk(end)


def delta(answer: Answer, text: str) -> bytes:
    return answer.prefix + quote(text) + b"}\n\n"  # the hot path: one escape


def redacted(answer: Answer, data: str) -> bytes:
    """Redacted thinking: an empty reasoning part holding the data the API needs back."""
    answer.parts += 1
    part_id = f"reasoning-{answer.parts}"
    metadata = {"anthropic": {"redactedData": data}}
    return chunk({"type": "reasoning-start", "id": part_id, "providerMetadata": metadata}) + chunk(
        {"type": "reasoning-end", "id": part_id}
    )


def _executed(call: Call, payload: dict[str, Any]) -> dict[str, Any]:
    if call.run_by != CALLER:  # Anthropic's or the relay's: not the caller's to run
        payload["providerExecuted"] = True
    return payload


def tool_start(call: Call) -> bytes:
    return chunk(
        _executed(call, {"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name})
    )


def tool_head(call: Call) -> bytes:
    return (
        b'data: {"type":"tool-input-delta","toolCallId":' + quote(call.id) + b',"inputTextDelta":'
    )


def tool_delta(head: bytes, piece: str) -> bytes:
    return head + quote(piece) + b"}\n\n"


def tool_input(call: Call, tool_input: Any, error: str | None) -> bytes:
    payload = {"toolCallId": call.id, "toolName": call.name, "input": tool_input}
    if error is None:
        return chunk(_executed(call, {"type": "tool-input-available", **payload}))
    return chunk(_executed(call, {"type": "tool-input-error", **payload, "errorText": error}))


def tool_output(call: Call, output: Any, error: str | None) -> bytes:
    if error is None:
        payload = {"type": "tool-output-available", "toolCallId": call.id, "output": output}
    else:
        payload = {"type": "tool-output-error", "toolCallId": call.id, "errorText": error}
    return chunk({**payload, "providerExecuted": True})


def citation(answer: Answer, cited: dict[str, Any]) -> bytes:
    """A cited web page as a `source-url`, once per URL (http and https only)."""
    url = cited.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return b""
    if url in answer.sources:
        return b""
    answer.sources.add(url)
    source = {"type": "source-url", "sourceId": f"source-{len(answer.sources)}", "url": url}
    if isinstance(cited.get("title"), str):
        source["title"] = cited["title"]
    return chunk(source)


def done(answer: Answer) -> bytes:
    stop_reason = answer.stop.get("stop_reason")
    metadata: dict[str, Any] = {"usage": answer.total_usage(), "stop_reason": stop_reason}
    if answer.stop.get("stop_sequence") is not None:
        metadata["stop_sequence"] = answer.stop["stop_sequence"]
    finish = {
        "type": "finish",
        "finishReason": FINISH_REASONS.get(stop_reason, "other"),
        "messageMetadata": metadata,
    }
    return chunk(finish) + END


def failed(error_type: str, message: str) -> bytes:
    if error_type == "cancelled":  # stopped: the AI SDK marks the message aborted
        return chunk({"type": "abort"}) + END
    return chunk({"type": "error", "errorText": message}) + END


UI = Dialect(
    start=start,
    step=lambda begins: STEPS[begins],
    opening=opening,
    closing=closing,
    delta=delta,
    thought=delta,  # the open part's prefix says which
    redacted=redacted,
    tool_start=tool_start,
    tool_head=tool_head,
    tool_delta=tool_delta,
    tool_input=tool_input,
    tool_output=tool_output,
    citation=citation,
    done=done,
    failed=failed,
    headers=HEADERS,
)
