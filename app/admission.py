"""Who may open a stream, and how many at once: the origin, the host, the client key and
the stream slots (callers' identities: app/identity.py).

Everything here answers before the upstream is called, and costs nothing per delta.
"""

import ipaddress

from fastapi import Request

from app.config import Settings
from app.errors import RETRY_AFTER_SECONDS, ApiError


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a browser's cross-site request, and a request to a name we do not serve.

    A cross-site page can POST to the relay without a preflight (a `text/plain` body), so
    a browser's request (it always sends `Origin` with a POST) must come from this relay's
    own page or an origin in CORS_ORIGINS. DNS rebinding makes a hostile page same-origin
    under a name of its own, so the Host must also be one the relay serves: ALLOWED_HOSTS,
    or by default `localhost` and IP literals. `curl` sends no Origin and keeps working.
    """
    host = request.headers.get("host", "")
    if not host_allowed(host, settings.allowed_hosts):
        raise ApiError(
            403,
            "forbidden",
            "This relay does not serve that host name; list it in ALLOWED_HOSTS.",
        )
    origin = request.headers.get("origin")
    if origin is None or origin in settings.cors_origins:
        return
    if origin not in (f"http://{host}", f"https://{host}"):
        raise ApiError(
            403,
            "forbidden",
            "Cross-site requests are refused; list the page's origin in CORS_ORIGINS.",
        )


def host_allowed(host: str, allowed: list[str]) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if allowed:
        return "*" in allowed or name in allowed  # lower case (Settings)
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def client_key(request: Request) -> str:
    # The app replaces the peer address with the proxy's X-Forwarded-For only for the
    # proxies named by FORWARDED_ALLOW_IPS (app/identity.py), so a caller cannot pick its
    # own key. A caller with an identity is counted by it instead (app/identity.py).
    return address_key(request.client.host) if request.client else "unknown"


def address_key(host: str) -> str:
    """One key per IPv4 address, and per IPv6 /64: one IPv6 host usually holds a whole /64,
    so keying the full address would hand it a fresh limit per address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # not an address (a unix socket, a test client): bounded anyway
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class StreamSlots:
    """Counts open streams, per process and per client. Plain counters: one event loop."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.active = 0
        self.by_client: dict[str, int] = {}

    def acquire(self, client: str) -> None:
        if self.active >= self.total:
            raise busy(
                503,
                "overloaded_error",
                "This relay is serving as many streams as it can; try again shortly.",
            )
        if self.by_client.get(client, 0) >= self.per_client:
            raise busy(
                429, "rate_limit_error", f"At most {self.per_client} streams at once per client."
            )
        self.active += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1

    def release(self, client: str) -> None:
        self.active -= 1
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


class ReaderSlots:
    """Counts resumed streams being read: per client (as many as it may hold streams, apart
    from those), and those read from another replica (each holds a pooled Redis connection,
    so they stay below the pool)."""

    def __init__(self, per_client: int, remote: int) -> None:
        self.per_client, self.remote = per_client, remote
        self.by_client: dict[str, int] = {}
        self.remote_active = 0

    def acquire(self, client: str) -> None:
        if self.by_client.get(client, 0) >= self.per_client:
            raise busy(
                429,
                "rate_limit_error",
                f"At most {self.per_client} resumed streams at once per client.",
            )
        self.by_client[client] = self.by_client.get(client, 0) + 1

    def acquire_remote(self) -> None:
        if self.remote_active >= self.remote:
            raise busy(
                503,
                "overloaded_error",
                "This relay is serving as many resumed streams as it can; try again shortly.",
            )
        self.remote_active += 1

    def release(self, client: str, remote: bool) -> None:
        self.remote_active -= remote
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


def busy(status: int, error_type: str, message: str) -> ApiError:
    """A refusal for now (a limit is reached): come back in a little while."""
    return ApiError(status, error_type, message, {"Retry-After": RETRY_AFTER_SECONDS})
