"""The socket layer under httpx2: httpcore2's connection pool (and its HTTP/1.1, TLS and
keep-alive logic) on plain asyncio streams.

httpcore2's default backend goes through anyio, which opens a cancel scope with a timer
for every socket read. On a relay that reads one small chunk per delta, that bookkeeping
was the largest single cost per delta (about a fifth of the CPU, in the benchmark's
profile). Here a read is a buffer check, and only a read that has to wait arms a timer.
"""

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

# Stop reading from the socket past this much unread data: backpressure reaches the peer.
HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self.protocol
        if not protocol.chunks and not protocol.eof:
            loop = asyncio.get_running_loop()
            protocol.waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            except TimeoutError:
                raise httpcore2.ReadTimeout("read timed out") from None
            finally:
                protocol.waiter = None
                if timer is not None:
                    timer.cancel()
        if not protocol.chunks:
            if protocol.error is not None:
                raise httpcore2.ReadError(str(protocol.error))
            return b""
        data = protocol.chunks[0] if len(protocol.chunks) == 1 else b"".join(protocol.chunks)
        if len(data) > max_bytes:
            data, rest = data[:max_bytes], data[max_bytes:]
            protocol.chunks = [rest]
            protocol.size = len(rest)
        else:
            protocol.chunks = []
            protocol.size = 0
        if protocol.reading_paused and protocol.size <= HIGH_WATER // 2:
            protocol.reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self.transport.is_closing():
            raise httpcore2.WriteError("connection closed")
        self.transport.write(buffer)
        drained = self.protocol.drained
        if drained is not None:
            try:
                await asyncio.wait_for(asyncio.shield(drained), timeout)
            except TimeoutError:
                raise httpcore2.WriteTimeout("write timed out") from None

    async def aclose(self) -> None:
        # abort, not close: a TLS close waits for the peer's close_notify (up to 30 s),
        # and a stream being dropped must stop the upstream now.
        self.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self.transport,
                self.protocol,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except TimeoutError:
            self.transport.abort()
            raise httpcore2.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            self.transport.abort()
            raise httpcore2.ConnectError(str(exc)) from exc
        assert transport is not None
        return AsyncioStream(transport, self.protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle pooled connection the server closed (or wrote to) is no use.
            return self.protocol.eof or bool(self.protocol.chunks)
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        if info in ("ssl_object", "socket"):
            return self.transport.get_extra_info(info)
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, host, port, local_addr=local), timeout
            )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_unix_connection(_Protocol, path), timeout
            )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"connecting to {path} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def asyncio_transport(limits: httpx2.Limits) -> httpx2.AsyncHTTPTransport:
    """httpx2's own transport, its connection pool running on `AsyncioBackend`."""
    transport = httpx2.AsyncHTTPTransport(limits=limits)
    # httpx2 builds its pool without a way to pass a network backend; this is the same
    # pool, with the same TLS context, on ours.
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport
