"""The upstream-to-frames translation: one upstream event in, the caller's frame (if any) out.

Pure: no I/O, no clock, no awaiting. Its only state is an `Answer`, which keeps what the
frames need (the message id and model, the stop reason, the usage, a delta count) and never
the text, so each delta costs the same at the end of a long answer as at its start.
"""

from typing import Any

from app.dialect import Answer
from app.errors import ApiError, event_error, stream_error
from app.sse import parse_json

UNREADABLE = "The upstream sent an unreadable event."


def message_started(answer: Answer, data: bytes) -> None:
    """Take an attempt's `message_start`; raises a retryable `ApiError` if it is unusable."""
    try:
        message = parse_json(data)["message"]
    except (ValueError, KeyError, TypeError):
        message = None
    if not isinstance(message, dict):
        raise ApiError(502, "upstream_error", UNREADABLE, retryable=True)
    answer.message = message
    _merge(answer.usage, message.get("usage"))


def translate(answer: Answer, name: bytes, data: bytes) -> bytes | None:
    """The bytes to send for one upstream event after `message_start`, or None.

    Raises `ApiError` for an upstream `error` event or an event that cannot be read.
    """
    try:
        if name == b"content_block_delta":
            delta = parse_json(data)["delta"]
            kind, dialect = delta["type"], answer.dialect
            if kind == "text_delta":
                part, frame = "text", dialect.delta(delta["text"])
                answer.deltas += 1
            elif kind == "thinking_delta" and answer.thinking:
                part, frame = "thinking", dialect.thought(delta["thinking"])
            else:
                return None  # signatures, tool input, and whatever the API adds later
            if part == answer.part:
                return frame
            # The start goes out with the first delta: an attempt that failed before it
            # never showed, so it could be retried unseen.
            head = dialect.start(answer) if answer.part is None else b""
            head += dialect.opening(part, answer.part)
            answer.part = part
            return head + frame
        if name == b"message_delta":
            payload = parse_json(data)
            answer.stop.update(payload.get("delta") or {})
            _merge(answer.usage, payload.get("usage"))
            return None
        if name == b"message_stop":
            answer.done = True
            done = answer.dialect.done(answer)
            return done if answer.part else answer.dialect.start(answer) + done
        if name == b"error":
            raise stream_error(*event_error(parse_json(data)))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(502, "upstream_error", UNREADABLE, retryable=True) from None
    # ping, content_block_start/stop, and any event type the API adds later.
    return None


def failure_frames(answer: Answer, error_type: str, message: str) -> bytes:
    """The end of a stream that failed after its 200: its start if it never went, then
    the dialect's error."""
    frame = answer.dialect.failed(error_type, message)
    return frame if answer.part else answer.dialect.start(answer) + frame


def _merge(usage: dict[str, Any], update: Any) -> None:
    if isinstance(update, dict):
        usage.update((k, v) for k, v in update.items() if v is not None)
