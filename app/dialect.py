"""What both dialects' encoders share with the translation: the `Dialect` they implement and
the `Answer` they read. A leaf below the translation, so an encoder never imports it."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Dialect(NamedTuple):
    """How a dialect encodes what the translation emits, chosen once per stream: the
    relay's own frames (app/frames.py) or the AI SDK's UI message stream (app/uistream.py).
    Each is one encode per delta."""

    start: Callable[["Answer"], bytes]  # the message's start, before anything else
    opening: Callable[[str, str | None], bytes]  # a part begins: "thinking" or "text"
    delta: Callable[[str], bytes]  # answer text
    thought: Callable[[str], bytes]  # thinking text
    done: Callable[["Answer"], bytes]  # the answer is complete
    failed: Callable[[str, str], bytes]  # it ended early: error type, message
    headers: dict[str, str]  # of the response


@dataclass(slots=True)
class Answer:
    """What the translation keeps of one answer, across upstream attempts."""

    mode: str
    dialect: Dialect
    thinking: bool = False  # asked for: else thinking an upstream sends is not shown
    stream_id: str | None = None  # resumable streams: the handle, in `start`
    message: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    stop: dict[str, Any] = field(default_factory=dict)
    deltas: int = 0  # text deltas
    part: str | None = None  # what the last delta was: None until one was shown
    done: bool = False
