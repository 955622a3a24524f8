"""The relay's own dialect: `event: start`, `thinking` (on request), `delta`, then `done`
or `error` (the contract in the README), for curl and the page."""

from typing import Any

from app.dialect import Answer, Dialect
from app.sse import delta_frame, encode_frame, error_frame


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


def thinking_frame(text: str) -> bytes:
    return encode_frame(b"thinking", {"text": text})


RELAY = Dialect(
    start=start_frame,
    opening=lambda part, previous: b"",
    delta=delta_frame,
    thought=thinking_frame,
    done=lambda answer: encode_frame(b"done", done_payload(answer)),
    failed=error_frame,
    headers={},
)
