"""The one shared `AsyncAnthropic` client a process talks to the upstream with."""

from urllib.request import getproxies

import anthropic
import httpx2

from app.config import Settings
from app.demo import DEMO_BASE_URL, DemoTransport
from app.network import asyncio_transport


def make_client(settings: Settings) -> anthropic.AsyncAnthropic:
    # The read timeout is the idle timeout: httpx2 applies it to every socket read, so a
    # silent upstream is noticed at no cost per delta.
    timeout = httpx2.Timeout(
        connect=settings.upstream_connect_timeout,
        read=settings.stream_idle_timeout,
        write=settings.stream_idle_timeout,
        pool=settings.upstream_connect_timeout,
    )
    # No connection cap here: how many streams run at once is the relay's to decide.
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=100)
    if settings.mode == "demo":
        transport: httpx2.AsyncBaseTransport | None = DemoTransport(settings.demo_token_delay)
        base_url: str | None = DEMO_BASE_URL
    elif getproxies():
        # httpx2 honours HTTP(S)_PROXY only when it builds its transports itself: behind an
        # egress proxy, correctness first (its default network layer).
        transport = None
        base_url = settings.anthropic_base_url
    else:
        transport = asyncio_transport(limits)
        base_url = settings.anthropic_base_url
    key = settings.anthropic_api_key
    return anthropic.AsyncAnthropic(
        # An Anthropic-compatible server named by ANTHROPIC_BASE_URL may need no key.
        api_key=key.get_secret_value() if key else "none",
        base_url=base_url,
        # Retrying after bytes reached the caller would duplicate text, and a 429 is the
        # caller's to retry: the relay decides what to retry, not the SDK.
        max_retries=0,
        timeout=timeout,
        # A span per request costs ~130 us of CPU even with no tracer installed, and the
        # relay logs and measures every stream itself.
        open_telemetry=False,
        http_client=httpx2.AsyncClient(transport=transport, timeout=timeout, limits=limits),
    )
