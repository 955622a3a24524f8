"""The one shared `AsyncAnthropic` client a process talks to the upstream with.

Live mode uses the SDK's own aiohttp transport (`DefaultAioHttpClient`, the SDK's supported
fast path). Demo mode plugs the embedded demo upstream in as an httpx2 transport, so the
same SDK client, the same request building and the same relay code run either way.
"""

import anthropic
import httpx2

from app.config import Settings
from app.demo import DEMO_BASE_URL, DemoTransport


def make_client(settings: Settings) -> anthropic.AsyncAnthropic:
    # No read timeout: aiohttp would re-arm its `sock_read` timer on every socket read. A
    # silent upstream is the watchdog's to end (app/watchdog.py), with one clock read per
    # event instead.
    timeout = httpx2.Timeout(
        connect=settings.upstream_connect_timeout,
        read=None,
        write=settings.stream_idle_timeout,
        pool=settings.upstream_connect_timeout,
    )
    # One connection per open stream, and no other cap: how many streams run at once is
    # MAX_CONCURRENT_STREAMS's to decide. (`max_connections=None` would leave aiohttp's
    # own default cap of 100 in place.)
    limits = httpx2.Limits(
        max_connections=settings.max_concurrent_streams, max_keepalive_connections=100
    )
    if settings.mode == "demo":
        transport: httpx2.AsyncBaseTransport | None = DemoTransport(settings.demo_token_delay)
        base_url = DEMO_BASE_URL
    else:
        # No transport given: the SDK's aiohttp transport, and httpx2 mounts one per egress
        # proxy named by HTTP(S)_PROXY (minding NO_PROXY), so one stack serves every case.
        transport, base_url = None, settings.anthropic_base_url
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
        http_client=anthropic.DefaultAioHttpClient(
            transport=transport, timeout=timeout, limits=limits
        ),
    )
