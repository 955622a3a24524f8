"""The AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: v1`), so `useChat()`
reads the relay with no glue: `data: <json>` chunks, `start`, (thinking on request:
`reasoning-start`, `reasoning-delta`s, `reasoning-end`), `text-start`, one `text-delta`
per upstream delta, `text-end`, `finish`, then `data: [DONE]`. A failure after
the start is one `error` chunk; a stop (DELETE) one `abort` chunk. Keep-alive pings stay
SSE comments (app/response.py): a `data:` ping would fail the client's schema check.
"""

from typing import Any

from app.dialect import Answer, Dialect
from app.sse import compact_json, quote

TEXT_ID = "text-0"  # one text part per answer
REASONING_ID = "reasoning-0"  # and one reasoning part, first (thinking on request)
_PARTS = {"text": "text", "thinking": "reasoning"}
_IDS = {"text": TEXT_ID, "thinking": REASONING_ID}
_DELTA = b'data: {"type":"text-delta","id":"' + TEXT_ID.encode() + b'","delta":'
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


def chunk(payload: dict[str, Any]) -> bytes:
    return b"data: " + compact_json(payload) + b"\n\n"


def start(answer: Answer) -> bytes:
    message = answer.message
    metadata = {"model": message.get("model"), "mode": answer.mode}
    return chunk({"type": "start", "messageId": message.get("id"), "messageMetadata": metadata})


def opening(part: str, previous: str | None) -> bytes:
    """A part begins (`text`, or `thinking`: a reasoning part), ending the one before."""
    return (_end(previous) if previous else b"") + chunk(
        {"type": f"{_PARTS[part]}-start", "id": _IDS[part]}
    )


def _end(part: str) -> bytes:
    return chunk({"type": f"{_PARTS[part]}-end", "id": _IDS[part]})


def thought(text: str) -> bytes:
    return chunk({"type": "reasoning-delta", "id": REASONING_ID, "delta": text})


def delta(text: str) -> bytes:
    return _DELTA + quote(text) + b"}\n\n"  # the hot path: one escape, as the relay's own


def done(answer: Answer) -> bytes:
    stop_reason = answer.stop.get("stop_reason")
    metadata: dict[str, Any] = {"usage": answer.usage, "stop_reason": stop_reason}
    if answer.stop.get("stop_sequence") is not None:
        metadata["stop_sequence"] = answer.stop["stop_sequence"]
    finish = {
        "type": "finish",
        "finishReason": FINISH_REASONS.get(stop_reason, "other"),
        "messageMetadata": metadata,
    }
    return (_end(answer.part) if answer.part else b"") + chunk(finish) + END


def failed(error_type: str, message: str) -> bytes:
    if error_type == "cancelled":  # stopped: the AI SDK marks the message aborted
        return chunk({"type": "abort"}) + END
    return chunk({"type": "error", "errorText": message}) + END


UI = Dialect(
    start=start,
    opening=opening,
    delta=delta,
    thought=thought,
    done=done,
    failed=failed,
    headers=HEADERS,
)
