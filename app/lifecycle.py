"""Graceful shutdown: on SIGTERM the relay drains before uvicorn stops it.

uvicorn's own SIGTERM handling closes the listening socket at once and, after its graceful
timeout, cancels what still runs. A relay behind a load balancer wants more: keep answering
(`/readyz` and new chats with 503, so the balancer moves on), let streams in flight finish
for a grace period, end the rest with a `server_shutdown` frame, and only then let uvicorn
shut down as usual.
"""

import asyncio
import logging
import signal
import threading
from typing import Any

from app.runtime import Runtime

log = logging.getLogger("chat_relay")


def handle_sigterm(runtime: Runtime) -> None:
    """Take over SIGTERM for this process (a no-op off the main thread, as in tests)."""
    if threading.current_thread() is not threading.main_thread():
        return
    uvicorn_handler: Any = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []  # the loop holds tasks only weakly

    def on_sigterm() -> None:
        if not tasks:
            tasks.append(loop.create_task(drain(runtime, uvicorn_handler)))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


async def drain(runtime: Runtime, then: Any) -> None:
    log.warning("SIGTERM")
    await runtime.drain(runtime.settings.shutdown_grace_seconds)
    # Now the usual shutdown: uvicorn's handler sets its exit flag (and re-raises SIGTERM
    # once it has stopped, so a supervisor sees the signal it sent). sse-starlette's own
    # shutdown handling, which ends every stream at once with no frame, only sees this
    # signal now: by then no stream is left for it to end.
    if callable(then):
        then(signal.SIGTERM, None)
    else:
        signal.raise_signal(signal.SIGTERM)
