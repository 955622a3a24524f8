"""The upstream-to-frames translation: one upstream event in, the caller's frame (if any) out.

Pure: no I/O, no clock, no awaiting. Its only state is an `Answer`, which keeps what the
frames need (the message id and model, the stop reason, the usage, a delta count) and never
the text, so each delta costs the same at the end of a long answer as at its start.
"""

from dataclasses import dataclass, field
from typing import Any

from app.errors import ApiError, event_error, stream_error
from app.sse import delta_frame, encode_frame, error_frame, parse_json

UNREADABLE = "The upstream sent an unreadable event."


@dataclass(slots=True)
class Answer:
    """What the translation keeps of one answer, across upstream attempts."""

    mode: str
    stream_id: str | None = None  # resumable streams: the handle, in `start`
    message: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    stop: dict[str, Any] = field(default_factory=dict)
    deltas: int = 0
    done: bool = False


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
            if delta["type"] != "text_delta":
                return None  # thinking, tool input, and whatever the API adds later
            frame = delta_frame(delta["text"])
            answer.deltas += 1
            # `start` goes out with the first delta: an attempt that failed before it
            # never showed, so it could be retried unseen.
            return start_frame(answer) + frame if answer.deltas == 1 else frame
        if name == b"message_delta":
            payload = parse_json(data)
            answer.stop.update(payload.get("delta") or {})
            _merge(answer.usage, payload.get("usage"))
            return None
        if name == b"message_stop":
            answer.done = True
            done = encode_frame(b"done", done_payload(answer))
            return done if answer.deltas else start_frame(answer) + done
        if name == b"error":
            raise stream_error(*event_error(parse_json(data)))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(502, "upstream_error", UNREADABLE, retryable=True) from None
    # ping, content_block_start/stop, and any event type the API adds later.
    return None


def failure_frames(answer: Answer, error_type: str, message: str) -> bytes:
    """The end of a stream that failed after its 200: `start` if it never went, one `error`."""
    frame = error_frame(error_type, message)
    return frame if answer.deltas else start_frame(answer) + frame


def start_frame(answer: Answer) -> bytes:
    message = answer.message
    start = {"id": message.get("id"), "model": message.get("model"), "mode": answer.mode}
    if answer.stream_id is not None:
        start["stream_id"] = answer.stream_id
    return encode_frame(b"start", start)


def done_payload(answer: Answer) -> dict[str, Any]:
    stop = answer.stop
    done = {"done": True, "stop_reason": stop.get("stop_reason"), "usage": answer.usage}
    if stop.get("stop_sequence") is not None:
        done["stop_sequence"] = stop["stop_sequence"]
    return done


def _merge(usage: dict[str, Any], update: Any) -> None:
    if isinstance(update, dict):
        usage.update((k, v) for k, v in update.items() if v is not None)
