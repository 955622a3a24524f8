"""One relayed chat's life, as one task: open the upstream (with retries), translate its
events into frames, hand them to the response; and the one way it ends early.

Every early end goes through `Stream.end(reason)`, which cancels the stream's one cancel
scope: the caller's disconnect, a caller that stops reading (the send timeout), the shutdown
drain. Whatever the task is awaiting then (a connect, a backoff, a reconnect, a read, room
in the outbox) is interrupted the same way, in demo mode as over plain HTTP or TLS, and
its `finally` closes the upstream. Ending never depends on how a transport fails a read.
"""

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anthropic
import anyio

from app import telemetry
from app.ask import Tally
from app.dialect import Dialect
from app.errors import SHUTDOWN, ApiError, shutting_down
from app.frames import RELAY
from app.journal import Journal
from app.otel import traced
from app.outbox import Outbox
from app.record import StreamRecord
from app.relaytools import Ran
from app.steps import finished_for_the_caller, next_request, next_step, tools_ran
from app.translate import Answer, failure_frames, message_started, translate
from app.upstream import READ_ERRORS, drain, open_upstream, read_failure

if TYPE_CHECKING:
    from app.genai import GenAI

# The last frame of a stream the relay ended after its start, by why it ended.
CANCELLED = ("cancelled", "The answer was cancelled.")
ENDINGS = {
    "stopped": ("cancelled", "Stopped."),  # DELETE
    "replaced": ("cancelled", "A newer answer for this chat took its place."),
    "server_shutdown": SHUTDOWN,
    "expired": ("expired", "Nobody came back for this answer in time; please ask again."),
}


@dataclass(eq=False)  # a stream is an identity, kept in a set while it runs
class Stream:
    client: anthropic.AsyncAnthropic
    params: dict[str, Any]
    client_key: str
    mode: str
    idle_timeout: float
    retries: int
    backoff: float
    # Seconds a resumable stream waits for its caller to come back (0: not resumable).
    resume_window: float = 0.0
    dialect: Dialect = RELAY  # how its frames are encoded (chosen by the request's body)
    chat_id: str | None = None  # a useChat body's chat id: a second key to a resumable one
    # Gives back what the request body held of MAX_HELD_BODY_BYTES (app/body.py), once.
    let_go: Callable[[], None] | None = None
    attached: Tally = field(default_factory=Tally)  # its images and PDFs, for the log line
    tools: bool = False  # tools in play (app/tools.py): tool blocks shown, content kept
    max_steps: int = 1  # upstream requests it may make (pause_turn is continued)
    message_id: str | None = None  # the UI message it continues, if any
    # Runs the relay's own tool calls of a step (app/relaytools.py), when it has MCP servers.
    run_tools: Callable[[list[tuple[Any, dict[str, Any]]]], Awaitable[list[Ran]]] | None = None
    _asked: list[dict[str, Any]] | None = None  # the caller's turns, once a step continues
    # The name its stream id is kept under: scoped to its caller (app/identity.py).
    scoped: Callable[[str], str] | None = None
    _key: str | None = None
    answer: Answer = field(init=False)
    outbox: Outbox | Journal = field(default_factory=Outbox)
    _expiry: asyncio.TimerHandle | None = None
    _remote: tuple[str, int] | None = None  # a reader on another replica: (token, reader)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    # Resolved once the HTTP status is decided: None for a 200 stream, else the error.
    ready: "asyncio.Future[ApiError | None]" = field(init=False)
    model: str = field(init=False)
    status: int = 0
    started: float = field(default_factory=time.monotonic)
    first_delta: float | None = None
    # Since when it has waited for the upstream (the loop's clock; app/watchdog.py).
    waiting_since: float | None = None
    attempts: int = 0
    # "done", an error type, or why the relay ended it: "cancelled" (the caller left),
    # "send_timeout", "server_shutdown". None while it runs.
    outcome: str | None = None
    ended_by: str | None = None
    tracing: "GenAI | None" = None  # OpenTelemetry, when on (app/otel.py, app/genai.py)

    def __post_init__(self) -> None:
        self.model = self.params["model"]
        self.answer = Answer(
            self.mode,
            self.dialect,
            "thinking" in self.params,
            tools=self.tools,
            max_steps=self.max_steps,
            message_id=self.message_id,
        )
        if self.resume_window > 0:
            self.answer.stream_id = secrets.token_urlsafe(24)
            scoped = self.scoped
            self._key = scoped(self.answer.stream_id) if scoped else self.answer.stream_id
            self.outbox = Journal()
        self.ready = asyncio.get_running_loop().create_future()

    @property
    def stream_id(self) -> str | None:
        """What it is found by (resumable streams only): its handle (192 random bits, in
        `start`), scoped to its caller when callers have identities."""
        return self._key

    @property
    def resumes(self) -> int:
        """Readers that came back: every attach after the first (the POST's own)."""
        return max(self.outbox.reader - 1, 0) if isinstance(self.outbox, Journal) else 0

    @property
    def deltas(self) -> int:
        return self.answer.deltas

    @property
    def usage(self) -> dict[str, Any]:
        return self.answer.total_usage()

    def end(self, reason: str) -> None:
        """End the stream now, for `reason`; a no-op once it has ended (the first wins)."""
        if self.outcome is None and self.ended_by is None:
            self.ended_by = reason
            self.scope.cancel()

    def too_late(self) -> None:
        """The upstream has been silent for `idle_timeout` (app/watchdog.py); not while the
        stream waits for its reader instead (a full outbox)."""
        if not self.outbox.blocked:
            self.end("idle")

    def drop_conversation(self) -> None:
        """Let go of the conversation (up to MAX_BODY_BYTES, images and PDFs included) and
        of its share of MAX_HELD_BODY_BYTES: not held for the rest of the answer."""
        self.params = {}
        if self.let_go is not None:
            let_go, self.let_go = self.let_go, None
            let_go()

    def attach(self) -> int:
        """A new reader of a resumable stream: it takes over from the previous one."""
        assert isinstance(self.outbox, Journal)
        if self._expiry is not None:  # someone came back in time
            self._expiry.cancel()
            self._expiry = None
        return self.outbox.attach()

    def read(self, after: int = 0) -> tuple[int, AsyncIterator[bytes]]:
        """A new reader: its number, and the frames it sends (a resumable stream's from
        frame id `after` on)."""
        if isinstance(self.outbox, Journal):
            reader = self.attach()
            return reader, self.outbox.follow(reader, after)
        return 0, self.outbox.frames()

    def left(self, reader: int, reason: str = "cancelled") -> None:
        """Reader `reader` went away (`reason`: it left, or stopped reading). A stream
        that is not resumable ends: nobody pays for tokens nobody reads. A resumable one
        goes on for RESUME_WINDOW, then ends as "expired" unless a reader came back. A
        reader that was taken over from changes nothing."""
        if self.stream_id is None:
            self.end(reason)
        elif self.outcome is not None:
            return  # over: nothing runs that could expire (a timer would hold the stream)
        elif self.outbox.reader == reader and self._expiry is None:  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self.resume_window, self.end, "expired")

    def attach_remote(self, token: str) -> None:
        """A reader on another replica (`token`) took over (app/cluster.py)."""
        self._remote = (token, self.attach())

    def left_remote(self, token: str) -> None:
        if self._remote is not None and self._remote[0] == token:
            self.left(self._remote[1])

    @property
    def remote_token(self) -> str | None:
        """The reader on another replica that reads this stream now, if any."""
        remote = self._remote
        if remote is None or self.outbox.reader != remote[1]:  # type: ignore[union-attr]
            return None
        return remote[0]

    def remote_present(self, token: str | None) -> None:
        """What the heartbeat found of the remote reader's lease: `token`, or None once it
        lapsed. A lapse starts the resume window (the `left` message may have been lost);
        a lease that is back (Redis restarted empty meanwhile) stops it again; a newer
        reader's lease is a takeover whose `attach` message was lost."""
        current = self.remote_token
        if current is None:
            return
        if token is None:
            self.left(self._remote[1])  # type: ignore[index]
        elif token != current:
            self.attach_remote(token)
        elif self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def record(self) -> StreamRecord:
        """What happened, for the operators' rooms (app/telemetry.py): they never read the
        stream itself."""
        attached = self.attached
        record = StreamRecord(
            self.status,
            self.outcome,
            self.model,
            self.mode,
            self.client_key,
            self.attempts,
            self.stream_id is not None,
            self.resumes,
            self.started,
            self.first_delta,
            self.deltas,
            self.usage,
            attached.images + attached.documents,
            attached.nbytes,
            self.answer.tool_calls,
            self.answer.steps,
        )
        if self.tracing is not None:  # the log line joins the trace
            record.trace_id, record.span_id = self.tracing.ids()
        return record

    async def run(self) -> None:
        """The stream's task: runs until the answer is complete, failed, or ended."""
        try:
            with self.scope:
                await self._steps()
        finally:
            if self.outcome is None:  # ended from outside (or the task was cancelled)
                self._ended(self.ended_by or "cancelled")
            self.outbox.close()
            if self._expiry is not None:  # nothing left to expire
                self._expiry.cancel()

    async def _steps(self) -> None:
        # One answer, several upstream requests: a step that ends in `pause_turn` is asked
        # again with the turn so far; one that calls the relay's tools runs them and asks
        # again with their results. All inside the same scope, so every way a stream ends
        # ends a running tool call and any further step too.
        answer = self.answer
        while True:
            await self._attempts()
            if not answer.paused or self.outcome is not None:
                return
            if answer.pending and self.run_tools is not None:
                self.waiting_since = None  # not for the upstream: each call has its timeout
                ran = await self.run_tools(answer.pending)
                for result in ran:
                    await self.outbox.put(
                        answer.dialect.tool_output(result.call, result.output, result.error)
                    )
                blocks = [result.block for result in ran]
                if answer.caller_waits:  # the caller's tools too: the answer ends here
                    self.outcome = "done"
                    await self.outbox.put(finished_for_the_caller(answer, blocks))
                    return
                tools_ran(answer, blocks)
            else:
                next_step(answer)
            if self._asked is None:
                self._asked = self.params["messages"]
            self.params = next_request(self.params, self._asked, answer)
            self.attempts = 0

    async def _attempts(self) -> None:
        # One loop, every await in it interruptible by the scope: connect, backoff,
        # reconnect. A failure before the first delta is retried within the budget; after
        # it never, so no text is ever sent twice.
        while True:
            self.attempts += 1
            try:
                await self._attempt()
                return
            except ApiError as failure:
                shown = self.answer.step_shown  # never shown twice
                if shown or not failure.retryable or self.attempts > self.retries:
                    self._failed(failure)
                    return
            self.waiting_since = None  # waiting for the backoff, not the upstream
            # Exponential backoff with jitter, so retries from many streams do not align.
            await anyio.sleep(self.backoff * 2 ** (self.attempts - 1) * random.uniform(0.75, 1))

    @traced  # OpenTelemetry on: a CLIENT span per upstream request (app/genai.py)
    async def _attempt(self) -> None:
        clock = asyncio.get_running_loop().time
        self.waiting_since = clock()
        upstream = await open_upstream(self.client, self.params)
        try:
            message_started(self.answer, upstream.message_start)
            self._opened()
            answer, outbox = self.answer, self.outbox
            async for name, data in upstream.events:
                frame = translate(answer, name, data)
                if frame is not None:
                    if self.first_delta is None and answer.shown:
                        self.first_delta = time.monotonic()
                        if self.max_steps == 1:  # no retry nor next step from here on
                            self.drop_conversation()
                    await outbox.put(frame)
                    if answer.done or answer.paused:
                        self.outcome = "done" if answer.done else None
                        await drain(upstream)
                        return
                self.waiting_since = clock()  # for the next event from here
            raise ApiError(
                502,
                "upstream_error",
                "The upstream ended before the answer was complete.",
                retryable=True,
            )
        except READ_ERRORS as exc:
            raise read_failure(exc, self.idle_timeout) from None
        finally:
            await upstream.close()

    def _opened(self) -> None:
        # The first `message_start` decides the 200; a retried attempt's changes nothing.
        if not self.ready.done():
            self.status = 200
            self.ready.set_result(None)
            telemetry.stream_started()

    def _failed(self, failure: ApiError) -> None:
        self.outcome = failure.error_type
        if not self.ready.done():
            self.ready.set_result(failure)  # plain HTTP, before any frame
        else:
            self.outbox.put_nowait(failure_frames(self.answer, failure.error_type, failure.message))

    def _ended(self, reason: str) -> None:
        if reason == "idle":  # the watchdog's: as a read timeout was before it
            timeout = f"The upstream sent nothing for {self.idle_timeout:g} s."
            self._failed(ApiError(504, "timeout_error", timeout))
            return
        self.outcome = reason
        if self.ready.done():
            # Started: whoever reads it now or comes back hears how it ended, never just
            # an end of the body (a resumable answer's replay included).
            self.outbox.put_nowait(failure_frames(self.answer, *ENDINGS.get(reason, CANCELLED)))
        elif reason == "server_shutdown":
            self.ready.set_result(shutting_down())
        else:
            self.status = 499  # what nginx logs for a caller who left before the answer
            self.ready.set_result(ApiError(499, reason, "The caller went away."))
