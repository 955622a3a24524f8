"""What both dialects' encoders share with the translation: the `Dialect` they implement and
the `Answer` they read. A leaf below the translation, so an encoder never imports it."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Who runs a tool call: the caller, Anthropic (a server tool), or the relay (MCP).
CALLER, ANTHROPIC, RELAY_RUN = "caller", "anthropic", "relay"
# A relay tool's name: `mcp__<server>__<tool>` (a caller's tool may not start so).
RELAY_TOOL_PREFIX = "mcp__"


class Call(NamedTuple):
    """One tool call of the answer, as its frames name it."""

    id: str
    name: str
    run_by: str


class Dialect(NamedTuple):
    """How a dialect encodes what the translation emits, chosen once per stream: the
    relay's own frames (app/frames.py) or the AI SDK's UI message stream (app/uistream.py).
    Each is one encode per delta."""

    start: Callable[["Answer"], bytes]  # the message's start, before anything else
    step: Callable[[bool], bytes]  # an upstream response begins (True) or ends (False)
    opening: Callable[["Answer", str], bytes]  # a part begins: "thinking" or "text"
    closing: Callable[["Answer", str, str | None], bytes]  # it ends (a thinking signature)
    delta: Callable[["Answer", str], bytes]  # answer text
    thought: Callable[["Answer", str], bytes]  # thinking text
    redacted: Callable[["Answer", str], bytes]  # redacted thinking (tools in play)
    tool_start: Callable[[Call], bytes]  # a tool call began
    tool_head: Callable[[Call], bytes]  # its input deltas' constant head, encoded once
    tool_delta: Callable[[bytes, str], bytes]  # a piece of its input's JSON text
    tool_input: Callable[[Call, Any, str | None], bytes]  # its input, parsed (or an error)
    tool_output: Callable[[Call, Any, str | None], bytes]  # its result (or an error)
    citation: Callable[["Answer", dict[str, Any]], bytes]  # a source the text cites
    done: Callable[["Answer"], bytes]  # the answer is complete
    failed: Callable[[str, str], bytes]  # it ended early: error type, message
    headers: dict[str, str]  # of the response


@dataclass(slots=True)
class Block:
    """A content block of the current upstream response while it streams. Its pieces
    (text, thinking or input JSON) are joined once, at its end: constant work per delta."""

    start: dict[str, Any]  # as `content_block_start` gave it
    call: Call | None = None  # a tool call's
    head: bytes = b""  # and its input deltas' head (the dialect's)
    pieces: list[str] = field(default_factory=list)
    signature: str | None = None


@dataclass(slots=True)
class Answer:
    """What the translation keeps of one answer, across upstream attempts and steps.

    Without tools in play it never keeps the text: each delta costs the same at the end of
    a long answer as at its start. With tools it keeps the assistant turn's content blocks
    (bounded by max_tokens), since the caller needs them back to continue."""

    mode: str
    dialect: Dialect
    thinking: bool = False  # asked for: else thinking an upstream sends is not shown
    stream_id: str | None = None  # resumable streams: the handle, in `start`
    tools: bool = False  # tools in play: tool blocks are shown and the content kept
    max_steps: int = 1  # upstream requests this answer may make (pause_turn continues)
    message_id: str | None = None  # the UI message this answer continues, if any
    message: dict[str, Any] = field(default_factory=dict)  # the first response's start
    response: dict[str, Any] = field(default_factory=dict)  # this request's (app/genai.py)
    usage: dict[str, Any] = field(default_factory=dict)  # this step's, as the API counts
    earlier: dict[str, Any] = field(default_factory=dict)  # the finished steps', summed
    stop: dict[str, Any] = field(default_factory=dict)
    deltas: int = 0  # text deltas
    shown: bool = False  # the start went out: nothing before it may be sent again
    step_shown: bool = False  # this step's start-step went out
    open: int | None = None  # the index of the text or thinking part being shown
    part: str | None = None  # and its kind
    parts: int = 0  # parts opened so far, for their ids
    part_id: str = ""  # the open part's id (UI)
    prefix: bytes = b""  # a dialect's constant head for the open part's deltas
    blocks: dict[int, Block] = field(default_factory=dict)  # this step's, by index
    content: list[dict[str, Any]] = field(default_factory=list)  # the turn (tools in play)
    kept: int = 0  # blocks of `content` from finished steps (a retry drops the rest)
    calls: dict[str, Call] = field(default_factory=dict)  # tool calls by id
    sources: set[str] = field(default_factory=set)  # cited URLs sent as sources (UI)
    tool_calls: dict[str, int] = field(default_factory=dict)  # count by who runs them
    steps: int = 0  # upstream responses complete
    paused: bool = False  # this step ended in `pause_turn`: the relay asks again
    # The relay's own tool calls of this step (run by app/relaytools.py), with their input;
    # and whether the step also waits for the caller's.
    pending: list[tuple[Call, dict[str, Any]]] = field(default_factory=list)
    caller_waits: bool = False
    turns: list[dict[str, Any]] = field(default_factory=list)  # earlier steps' turns, done
    results: list[dict[str, Any]] = field(default_factory=list)  # the relay's, left to send
    done: bool = False

    def total_usage(self) -> dict[str, Any]:
        """The usage over every step: the finished ones' plus this one's."""
        return add_usage(self.earlier, self.usage) if self.earlier else self.usage


def add_usage(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two usages summed: counts added (nested ones too), anything else the latest."""
    total = dict(a)
    for key, value in b.items():
        mine = total.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            total[key] = add_usage(mine, value)
        elif isinstance(value, int | float) and isinstance(mine, int | float):
            total[key] = mine + value
        else:
            total[key] = value
    return total
