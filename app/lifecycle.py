"""Graceful shutdown: on SIGTERM the relay drains before uvicorn stops it.

uvicorn's own SIGTERM handling closes the listening socket at once and, after its graceful
timeout, cancels what still runs. A relay behind a load balancer wants more: keep answering
(`/readyz` and new chats with 503, so the balancer moves on), let streams in flight finish
for a grace period, end the rest with a `server_shutdown` frame, and only then let uvicorn
shut down as usual.
"""

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("chat_relay")


def handle_sigterm(app: FastAPI) -> None:
    """Take over SIGTERM for this process (a no-op off the main thread, as in tests)."""
    if threading.current_thread() is not threading.main_thread():
        return
    uvicorn_handler: Any = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        if not app.state.draining:
            # Kept on the state: the loop holds tasks only weakly.
            app.state.drain_task = loop.create_task(drain(app, uvicorn_handler))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


async def drain(app: FastAPI, then: Any) -> None:
    state = app.state
    grace = state.settings.shutdown_grace_seconds
    state.draining = True
    log.warning("SIGTERM: draining %d streams for up to %g s", len(state.streams), grace)
    if state.streams:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.drained.wait(), grace)
    if state.streams:
        log.warning("grace period over: ending %d streams", len(state.streams))
        for stream in list(state.streams):
            await stream.end("server_shutdown")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.drained.wait(), 1.0)
    # Now the usual shutdown: uvicorn's handler sets its exit flag (and re-raises SIGTERM
    # once it has stopped, so a supervisor sees the signal it sent).
    if callable(then):
        then(signal.SIGTERM, None)
    else:
        signal.raise_signal(signal.SIGTERM)
