"""What happened to one stream, as a plain record: what the stream hands to the operators'
rooms (app/telemetry.py, app/genai.py) when it ends, so they never read the stream itself.
A leaf: it imports nothing of the relay."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class StreamRecord:
    status: int  # 200, 499 (the caller left before the answer), or the refusal's
    outcome: str | None  # "done", an error type, or why the relay ended it
    model: str
    mode: str
    client_key: str
    attempts: int
    resumable: bool
    resumes: int
    started: float  # time.monotonic() at the request
    first_delta: float | None
    deltas: int
    usage: dict[str, Any] = field(default_factory=dict)
    attachments: int = 0  # images and PDFs: counts, never content
    attachment_bytes: int = 0
    tool_calls: dict[str, int] = field(default_factory=dict)  # by who runs them
    steps: int = 0  # upstream responses the answer took
    # The trace the stream belongs to, and its request's span (hex), when tracing is on.
    trace_id: str | None = None
    span_id: str | None = None
