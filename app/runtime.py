"""The relay's runtime state, owned in one place: the upstream client, the stream slots,
the streams running, the resumable ones (and, with Redis, what replicas share), and
whether the process is draining.

A stream's slot is taken and given back here, around the stream's task, and every cleanup
step runs even when an earlier one raises.
"""

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import anthropic

from app import telemetry
from app.admission import ReaderSlots, StreamSlots
from app.ask import Ask
from app.attachments import without_data
from app.cluster import Cluster
from app.config import Settings
from app.dialect import Dialect
from app.errors import ApiError, shutting_down
from app.frames import RELAY
from app.journal import Journal
from app.kept import Kept
from app.mcphub import Hub
from app.mirror import Mirror, RemoteReader
from app.relaytools import Running, run_calls
from app.stream import Stream
from app.uimessages import CHAT_ID
from app.uistream import UI
from app.watchdog import Watchdog

if TYPE_CHECKING:
    from app.genai import GenAI

log = logging.getLogger("chat_relay")

# A stream id as the relay makes them (secrets.token_urlsafe(24)).
STREAM_ID = re.compile(r"[A-Za-z0-9_-]{32}")
# What finished answers kept for resuming may hold, per stream slot (app/kept.py): a long
# answer's frames (8,192 deltas at about 60 bytes) are about 0.5 MB, a typical one's a few KB.
KEPT_BYTES_PER_SLOT = 128 * 1024


class Runtime:
    def __init__(self, settings: Settings, client: anthropic.AsyncAnthropic) -> None:
        self.settings = settings
        self.client = client
        self.slots = StreamSlots(settings.max_concurrent_streams, settings.max_streams_per_client)
        self.streams: set[Stream] = set()
        # Resumable streams by id while they run; finished, their journals for the window.
        self.resumable: dict[str, Stream] = {}
        # A useChat chat's running resumable answer, by chat id: a second key to the same.
        self.chats: dict[str, Stream] = {}
        self.kept = Kept(
            settings.max_concurrent_streams * KEPT_BYTES_PER_SLOT,
            settings.resume_window,
            self._forget,
        )
        # The loop holds tasks only weakly: these are the strong references.
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self.reading = 0  # request bodies being read now (app/body.py)
        self.held_bytes = 0  # bytes of request bodies held now, of MAX_HELD_BODY_BYTES
        # Silent upstreams and callers that stopped reading, for every stream at once.
        self.watchdog = Watchdog(self.streams, settings.stream_idle_timeout, settings.send_timeout)
        # Resumed streams being read (remote readers: at most one per pooled connection).
        self.readers = ReaderSlots(settings.max_streams_per_client, settings.max_concurrent_streams)
        # Metric labels come from a fixed set: the models a request may name, or `other`.
        self.model_labels = frozenset(settings.allowed_models or [settings.default_model])
        # The operator's MCP servers (MCP_SERVERS), started with the app, and the calls to
        # them running now.
        self.hub: Hub | None = None
        if settings.mcp_servers:
            self.hub = Hub(settings.mcp_servers, settings.mcp_reconnect_seconds, 30.0)
        self.tool_calls = Running(settings.mcp_max_calls)
        # OpenTelemetry, when the OTEL_* variables ask for it (app/main.py sets it).
        self.tracing: GenAI | None = None
        # What replicas share, when there are several (REDIS_URL).
        self.cluster: Cluster | None = None
        if settings.redis_url is not None:
            self.cluster = Cluster(
                settings.redis_url.get_secret_value(),
                settings.redis_lease_seconds,
                self.resumable,
                settings.max_concurrent_streams,
            )
            self.mirror: Mirror | None = Mirror(self.cluster)
        else:
            self.mirror = None

    def start(
        self,
        ask: Ask,
        client_key: str,
        held: int,
        *,
        log_content: bool,
        scoped: Callable[[str], str] | None = None,
    ) -> Stream:
        """Start a stream's task; its `ready` says how it opened (a refusal included). The
        stream gives back the `held` bytes of its request body once it has dropped them;
        `scoped` names its stream id for its caller (app/identity.py)."""
        settings = self.settings
        run_tools = None
        if self.hub is not None:  # the relay's tools, offered next to the caller's
            offered = self.hub.definitions()
            if offered:
                ask.params["tools"] = [*ask.params.get("tools", ()), *offered]
            ask.tools, ask.steps = True, settings.max_tool_steps
            run_tools = partial(
                run_calls,
                hub=self.hub,
                settings=settings,
                running=self.tool_calls,
                tracing=self.tracing,
            )
        stream = Stream(
            self.client,
            ask.params,
            client_key,
            settings.mode,
            settings.stream_idle_timeout,
            settings.upstream_retries,
            settings.upstream_retry_backoff,
            settings.resume_window if ask.resumable else 0.0,
            UI if ask.dialect == "ui" else RELAY,
            ask.chat_id,
            partial(self.let_go, held),
            ask.attached,
            tools=ask.tools,
            max_steps=ask.steps,
            message_id=ask.message_id,
            run_tools=run_tools,
            scoped=scoped,
        )
        stream.tracing = self.tracing
        # Spawned here, in the request's context: the stream's spans are its children.
        self._spawn(self._life(stream, log_content))
        return stream

    async def _life(self, stream: Stream, log_content: bool) -> None:
        try:
            lease = await self._admit(stream)
        except ApiError as refused:
            stream.drop_conversation()
            stream.ready.set_result(refused)
            return
        messages = without_data(stream.params["messages"]) if log_content else None
        label = stream.model if stream.model in self.model_labels else "other"
        if stream.stream_id is not None:
            self.resumable[stream.stream_id] = stream
            if stream.chat_id is not None:  # the chat's answer from now on
                previous = self.chats.get(stream.chat_id)
                if previous is not None:  # a regenerate, a second tab: the old one ends
                    previous.end("replaced")
                self.chats[stream.chat_id] = stream
            if self.mirror is not None:  # its frames go to Redis too, for other replicas
                self.mirror.add(stream)
        # Plain try/finally (not an ExitStack: a deque per stream): every step runs.
        self.streams.add(stream)
        telemetry.ACTIVE.inc()
        try:
            await stream.run()
        finally:
            try:
                telemetry.stream_ended(stream.record(), messages, label)
            finally:
                stream.drop_conversation()
                telemetry.ACTIVE.dec()
                self.streams.discard(stream)
                self.slots.release(stream.client_key)
                if stream.stream_id is not None:  # only its frames stay, for the window
                    del self.resumable[stream.stream_id]
                    if stream.chat_id is not None and self.chats.get(stream.chat_id) is stream:
                        del self.chats[stream.chat_id]
                    self.kept.add(stream.stream_id, stream.outbox)  # type: ignore[arg-type]
                if lease is not None:
                    await self.cluster.leases.release(stream.client_key, lease)  # type: ignore[union-attr]

    async def read(
        self,
        stream_id: str,
        after: int,
        client: str,
        dialect: Dialect = RELAY,
        *,
        running: bool = False,
    ) -> tuple[AsyncIterator[bytes], Callable[[str], None]] | None:
        """A new reader of resumable stream `stream_id` (it takes over from any other, on
        any replica): its frames after id `after`, and what to call when it leaves; None
        when the answer is over and has nothing after `after` (with `running`: when it is
        over, or unknown: useChat's resume wants only a running answer).

        Readers count against MAX_STREAMS_PER_CLIENT apart from streams, and readers of
        other replicas' streams (each holds a Redis connection) against the pool."""
        # Counted from here, before anything is awaited: concurrent requests see it.
        self.readers.acquire(client)
        opened = None
        try:
            opened = await self._open(stream_id, after, dialect, running)
        finally:
            if opened is None:  # refused, failed, or nothing to send
                self.readers.release(client, remote=False)
        if opened is None:
            return None
        frames, left, remote = opened
        reading = True

        def gone(reason: str) -> None:
            nonlocal reading
            if reading:  # told more than once (app/response.py): counted once
                reading = False
                self.readers.release(client, remote)
            left(reason)

        return frames, gone

    async def _open(
        self, stream_id: str, after: int, dialect: Dialect, running: bool
    ) -> tuple[AsyncIterator[bytes], Callable[[str], None], bool] | None:
        """A reader's frames, what to call when it leaves, and whether it reads from
        another replica; None when there is nothing (running) to read after `after`."""
        try:
            found, ended = await self._find(stream_id)
        except ApiError as exc:
            if running and exc.status == 404:
                return None
            raise
        if running and (isinstance(found, Journal) or ended is not None):
            return None  # finished
        if found is None:  # another replica's: from Redis
            cluster = self.cluster
            assert cluster is not None
            if ended is not None and after >= ended:
                return None
            self.readers.acquire_remote()
            reader = RemoteReader(cluster, stream_id, after, dialect)
            return reader.frames(), reader.left, True
        journal = found.outbox if isinstance(found, Stream) else found
        if journal.closed and after >= len(journal):  # type: ignore[union-attr, arg-type]
            return None
        if self.cluster is not None:  # a reader on another replica is taken over
            self.cluster.announce("attach", stream_id)
        if isinstance(found, Stream):
            number, frames = found.read(after)
            return frames, partial(found.left, number), False
        # Finished: nothing runs that the reader could detach from.
        return found.follow(found.attach(), after), _nothing, False

    async def chat_stream(self, chat_id: str) -> str | None:
        """The stream id of chat `chat_id`'s answer while it runs, here or (with Redis) on
        another replica; None when none runs. Only a well-formed id costs Redis."""
        if not CHAT_ID.fullmatch(chat_id):
            return None
        stream = self.chats.get(chat_id)
        if stream is not None:
            return stream.stream_id
        if self.cluster is None:
            return None
        return await self.cluster.chat_stream(chat_id)

    async def stop(self, stream_id: str, *, missing_ok: bool = False) -> None:
        """Stop resumable stream `stream_id`, wherever it runs (a finished one: a no-op;
        an unknown one: 404, unless `missing_ok`)."""
        try:
            found, _ = await self._find(stream_id)
        except ApiError as exc:
            if missing_ok and exc.status == 404:
                return
            raise
        if found is None:
            await self.cluster.stop(stream_id)  # type: ignore[union-attr]
        elif isinstance(found, Stream):
            found.end("stopped")

    async def _find(self, stream_id: str) -> tuple[Stream | Journal | None, int | None]:
        """This replica's stream `stream_id` (running, or the journal of a finished one),
        or None for another replica's (with its frame count if it is over); else 404. The
        id is the capability for the stream; only a well-formed one costs Redis."""
        found = self.resumable.get(stream_id) or self.kept.get(stream_id)
        if found is not None:
            return found, None
        cluster = self.cluster
        if cluster is not None and STREAM_ID.fullmatch(stream_id):
            known, ended = await cluster.probe(stream_id)
            if known:
                return None, ended
        raise ApiError(404, "not_found", "No such stream: unknown, or its window has passed.")

    def _forget(self, stream_id: str) -> None:
        if self.mirror is not None:  # its window has passed: nobody can read it
            self.mirror.forget(stream_id)

    async def _admit(self, stream: Stream) -> str | None:
        """Take the stream's slot (and, with Redis, its client lease, and claim its id);
        returns the lease to give back."""
        if self.draining:  # SIGTERM came while its body was arriving
            raise shutting_down()
        self.slots.acquire(stream.client_key)
        if self.cluster is None:
            return None
        lease = None
        try:
            lease = await self.cluster.leases.take(stream.client_key, self.slots.per_client)
            if stream.stream_id is not None:
                await self.cluster.register(stream.stream_id, stream.chat_id)
        except BaseException:
            self.slots.release(stream.client_key)
            if lease is not None:
                await self.cluster.leases.release(stream.client_key, lease)
            raise
        return lease

    def let_go(self, size: int) -> None:
        """A request body's `size` bytes are no longer held (app/body.py)."""
        self.held_bytes -= size

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> None:
        """Refuse new streams, let those running finish for up to `grace` seconds, then end
        the rest with `server_shutdown`."""
        self.draining = True
        log.warning("draining %d streams for up to %g s", len(self.streams), grace)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        if self.streams:
            log.warning("grace period over: ending %d streams", len(self.streams))
        await self._end_all()

    async def close(self) -> None:
        await self._end_all()
        if self.hub is not None:
            await self.hub.close()
        self.watchdog.stop()
        self.kept.clear()
        await self.client.close()
        if self.mirror is not None:
            await self.mirror.close()  # what is pending, before the connections go
        if self.cluster is not None:
            await self.cluster.close()

    async def _end_all(self) -> None:
        for stream in list(self.streams):
            stream.end("server_shutdown")
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=2.0)


def _nothing(reason: str) -> None:
    """A reader of a finished answer left: nothing runs that it could detach from."""
