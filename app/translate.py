"""The upstream-to-frames translation: one upstream event in, the caller's frame (if any) out.

Pure: no I/O, no clock, no awaiting. Its only state is an `Answer` (app/dialect.py), which
keeps what the frames need (the message id and model, the stop reason, the usage, a delta
count) and, only when tools are in play, the assistant turn's content blocks: a text or
input delta is one append, joined once at the block's end.
"""

import json
from typing import Any

from app.dialect import ANTHROPIC, CALLER, RELAY_RUN, RELAY_TOOL_PREFIX, Answer, Block, Call
from app.errors import ApiError, event_error, stream_error
from app.servertools import citation_of, result_of
from app.sse import parse_json

UNREADABLE = "The upstream sent an unreadable event."
# A tool input that is not valid JSON (eager input streaming cut short, say) is carried as
# the API's own advice says to send it back: wrapped in an object under this key.
INVALID_JSON = "INVALID_JSON"
TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use"})


def message_started(answer: Answer, data: bytes) -> None:
    """Take an attempt's `message_start`; raises a retryable `ApiError` if it is unusable."""
    try:
        message = parse_json(data)["message"]
    except (ValueError, KeyError, TypeError):
        message = None
    if not isinstance(message, dict):
        raise ApiError(502, "upstream_error", UNREADABLE, retryable=True)
    if answer.steps == 0:  # the answer's id and model are its first response's
        answer.message = message
    answer.response = message
    answer.usage = {}  # a retried attempt's usage replaces the failed one's
    answer.blocks.clear()
    del answer.content[answer.kept :]  # what a failed attempt left, unseen
    answer.open = None
    _merge(answer.usage, message.get("usage"))


def translate(answer: Answer, name: bytes, data: bytes) -> bytes | None:
    """The bytes to send for one upstream event after `message_start`, or None.

    Raises `ApiError` for an upstream `error` event or an event that cannot be read.
    """
    try:
        if name == b"content_block_delta":
            payload = parse_json(data)
            delta, index = payload["delta"], payload["index"]
            kind, dialect = delta["type"], answer.dialect
            if kind == "text_delta":
                text = delta["text"]
                answer.deltas += 1
                if answer.tools:
                    answer.blocks[index].pieces.append(text)
                if answer.open == index:  # the hot path
                    return dialect.delta(answer, text)
                return _opening(answer, index, "text") + dialect.delta(answer, text)
            if kind == "thinking_delta" and (answer.thinking or answer.tools):
                thought = delta["thinking"]
                if answer.tools:
                    answer.blocks[index].pieces.append(thought)
                if not answer.thinking:
                    return None  # kept for the turn, not shown
                if answer.open == index:
                    return dialect.thought(answer, thought)
                return _opening(answer, index, "thinking") + dialect.thought(answer, thought)
            if not answer.tools:
                return None  # signatures, tool input, and whatever the API adds later
            if kind == "input_json_delta":  # as hot as a text delta
                block, piece = answer.blocks[index], delta["partial_json"]
                if not piece or block.call is None:
                    return None
                block.pieces.append(piece)
                return dialect.tool_delta(block.head, piece)
            return _other_delta(answer, index, delta)
        if name == b"content_block_start":
            return _block_started(answer, parse_json(data)) if answer.tools else None
        if name == b"content_block_stop":
            return _block_stopped(answer, parse_json(data)["index"])
        if name == b"message_delta":
            payload = parse_json(data)
            answer.stop.update(payload.get("delta") or {})
            _merge(answer.usage, payload.get("usage"))
            return None
        if name == b"message_stop":
            return _message_stopped(answer)
        if name == b"error":
            raise stream_error(*event_error(parse_json(data)))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(502, "upstream_error", UNREADABLE, retryable=True) from None
    # ping, and any event type the API adds later.
    return None


def failure_frames(answer: Answer, error_type: str, message: str) -> bytes:
    """The end of a stream that failed after its 200: its start if it never went, then
    the dialect's error."""
    head = b"" if answer.shown else answer.dialect.start(answer)
    answer.shown = True
    return head + answer.dialect.failed(error_type, message)


def _head(answer: Answer) -> bytes:
    """What must precede the first frame of a step: the answer's start (once), the step's."""
    if answer.step_shown:
        return b""
    head = b"" if answer.shown else answer.dialect.start(answer)
    answer.shown = answer.step_shown = True
    return head + answer.dialect.step(True)


def _opening(answer: Answer, index: int, part: str) -> bytes:
    # The start goes out with the first thing shown: an attempt that failed before it never
    # showed, so it could be retried unseen.
    head = _head(answer) + _closing(answer)
    answer.open, answer.part = index, part
    answer.parts += 1
    return head + answer.dialect.opening(answer, part)


def _closing(answer: Answer, signature: str | None = None) -> bytes:
    if answer.open is None:
        return b""
    part, answer.open = answer.part, None
    return answer.dialect.closing(answer, part or "text", signature)


def _block_started(answer: Answer, payload: dict[str, Any]) -> bytes | None:
    index, block = payload["index"], dict(payload["content_block"])
    kind = block["type"]
    answer.blocks[index] = kept = Block(block)
    if kind in TOOL_BLOCKS:
        name = str(block["name"])
        run_by = ANTHROPIC if kind == "server_tool_use" else _run_by(name)
        kept.call = call = Call(str(block["id"]), name, run_by)
        kept.head = answer.dialect.tool_head(call)
        answer.calls[call.id] = call
        answer.tool_calls[run_by] = answer.tool_calls.get(run_by, 0) + 1
        return _head(answer) + _closing(answer) + answer.dialect.tool_start(call)
    if kind == "redacted_thinking" and answer.thinking:
        return _head(answer) + _closing(answer) + answer.dialect.redacted(answer, block["data"])
    if kind.endswith("_tool_result") and "tool_use_id" in block:
        call = answer.calls.get(block["tool_use_id"]) or Call(block["tool_use_id"], "", ANTHROPIC)
        output, error = result_of(block)
        return _head(answer) + _closing(answer) + answer.dialect.tool_output(call, output, error)
    return None


def _other_delta(answer: Answer, index: int, delta: dict[str, Any]) -> bytes | None:
    kind, block = delta["type"], answer.blocks[index]
    if kind == "signature_delta":
        block.signature = delta["signature"]
        return None
    if kind == "citations_delta":
        citation = delta["citation"]
        block.start.setdefault("citations", []).append(citation)
        shown = citation_of(citation)
        return None if shown is None else _head(answer) + answer.dialect.citation(answer, shown)
    return None


def _block_stopped(answer: Answer, index: int) -> bytes | None:
    block = answer.blocks.pop(index, None)
    frame = _closing(answer, block.signature if block else None) if answer.open == index else b""
    if block is None:  # tools not in play: nothing kept
        return frame or None
    kept, kind = block.start, block.start["type"]
    if kind == "text":
        kept["text"] = "".join(block.pieces)
        if not kept["text"].strip() and not kept.get("citations"):
            return frame or None  # the API refuses a blank text block sent back: not kept
    elif kind == "thinking":
        kept["thinking"] = "".join(block.pieces)
        kept["signature"] = block.signature or kept.get("signature", "")
    elif block.call is not None:
        text = "".join(block.pieces)
        try:
            kept["input"] = json.loads(text) if text.strip() else {}
            error = None
        except ValueError:
            kept["input"] = {INVALID_JSON: text}
            error = "The tool's input is not valid JSON."
        if not isinstance(kept["input"], dict):
            kept["input"], error = {INVALID_JSON: text}, "The tool's input is not a JSON object."
        frame += answer.dialect.tool_input(block.call, kept["input"], error)
        if block.call.run_by == RELAY_RUN:
            answer.pending.append((block.call, kept["input"]))
        elif block.call.run_by == CALLER:
            answer.caller_waits = True
    answer.content.append(kept)
    return frame or None


def _message_stopped(answer: Answer) -> bytes:
    dialect = answer.dialect
    frames = _head(answer) + _closing(answer) + dialect.step(False)
    answer.steps += 1
    more = answer.steps < answer.max_steps
    stop_reason = answer.stop.get("stop_reason")
    if more and (stop_reason == "pause_turn" or (stop_reason == "tool_use" and answer.pending)):
        answer.paused = True  # the stream continues: asks again, or runs the relay's tools
        return frames
    answer.done = True
    return frames + dialect.done(answer)


def _run_by(name: str) -> str:
    return RELAY_RUN if name.startswith(RELAY_TOOL_PREFIX) else CALLER


def _merge(usage: dict[str, Any], update: Any) -> None:
    if isinstance(update, dict):
        usage.update((k, v) for k, v in update.items() if v is not None)
