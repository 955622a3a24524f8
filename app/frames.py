"""The relay's own dialect: `event: start`, `thinking` (on request), `delta`, the tool frames
(`tool_start`, `tool_delta`, `tool_call`, `tool_result`) and `citation`, then `done` or
`error` (the contract in the README), for curl and the page."""

from typing import Any

from app.dialect import Answer, Call, Dialect
from app.sse import encode_frame, error_frame, quote


def start_frame(answer: Answer) -> bytes:
    message = answer.message
    start = {"id": message.get("id"), "model": message.get("model"), "mode": answer.mode}
    if answer.stream_id is not None:
        start["stream_id"] = answer.stream_id
    return encode_frame(b"start", start)


def done_payload(answer: Answer) -> dict[str, Any]:
    stop = answer.stop
    done = {"done": True, "stop_reason": stop.get("stop_reason"), "usage": answer.total_usage()}
    if stop.get("stop_sequence") is not None:
        done["stop_sequence"] = stop["stop_sequence"]
    if answer.tools:  # the assistant turn, for the caller to send back as it is
        done["content"] = answer.content
    if answer.turns:  # the relay's own tool steps before it: they go first
        done["turns"] = answer.turns
    if answer.results:  # the relay's results, for the user turn with the caller's own
        done["tool_results"] = answer.results
    return done


def delta(answer: Answer, text: str) -> bytes:
    return b'event: delta\ndata: {"text":' + quote(text) + b"}\n\n"  # the hot path


def thinking_frame(answer: Answer, text: str) -> bytes:
    return b'event: thinking\ndata: {"text":' + quote(text) + b"}\n\n"


def tool_start(call: Call) -> bytes:
    return encode_frame(b"tool_start", {"id": call.id, "name": call.name, "run_by": call.run_by})


def tool_head(call: Call) -> bytes:
    return b'event: tool_delta\ndata: {"id":' + quote(call.id) + b',"json":'


def tool_delta(head: bytes, piece: str) -> bytes:
    return head + quote(piece) + b"}\n\n"  # as hot as a text delta: one escape


def tool_call(call: Call, tool_input: Any, error: str | None) -> bytes:
    payload = {"id": call.id, "name": call.name, "run_by": call.run_by, "input": tool_input}
    if error is not None:
        payload["error"] = error
    return encode_frame(b"tool_call", payload)


def tool_result(call: Call, output: Any, error: str | None) -> bytes:
    payload: dict[str, Any] = {"id": call.id, "name": call.name, "run_by": call.run_by}
    if error is None:
        payload["output"] = output
    else:
        payload["error"] = error
    return encode_frame(b"tool_result", payload)


def _nothing(*args: Any) -> bytes:
    return b""


RELAY = Dialect(
    start=start_frame,
    step=_nothing,
    opening=_nothing,
    closing=_nothing,
    delta=delta,
    thought=thinking_frame,
    redacted=_nothing,  # opaque: only `done.content` carries it
    tool_start=tool_start,
    tool_head=tool_head,
    tool_delta=tool_delta,
    tool_input=tool_call,
    tool_output=tool_result,
    citation=lambda answer, citation: encode_frame(b"citation", citation),
    done=lambda answer: encode_frame(b"done", done_payload(answer)),
    failed=error_frame,
    headers={},
)
