"""Who is calling: an identity for each request, and the answers it may find.

A request is identified, in this order, by the first of:
1. TRUSTED_USER_HEADER (oauth2-proxy's `X-Forwarded-User`, an ingress's auth header), only
   when the connection's own peer is one of FORWARDED_ALLOW_IPS: the caller is `user:<it>`;
2. a bearer token: one of RELAY_TOKENS (or RELAY_TOKEN, the caller `default`), the caller
   `token:<name>`; else, with JWT_JWKS_URL or JWT_PUBLIC_KEY, a JWT signed by that key, of
   JWT_ISSUER and JWT_AUDIENCE when set, unexpired: the caller `jwt:<sub>`.
With any of them configured, a request with none (or a wrong one) gets 401. With none
configured, callers have no identity, and a chat id (or stream id) is the capability.

Every running answer belongs to the identity that started it: its chat id and stream id
are looked up scoped to the caller (`Caller.scope`), in this process and in Redis alike, so
another caller's id is simply one that does not exist, on the same code path.
"""

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.admission import client_key
from app.config import Settings
from app.errors import ApiError
from app.jwks import JwtCheck

NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
# Where the app notes whether the socket's peer is a trusted proxy, before the rewrite.
PEER_TRUSTED = "chat_relay.peer_trusted"


@dataclass(frozen=True, slots=True)
class Caller:
    owner: str | None  # `token:<name>`, `jwt:<sub>`, `user:<header>`; None: no identities
    key: str  # what per-client limits count by: the identity, else the address

    def scope(self, key: str, form: re.Pattern[str]) -> str:
        """The name a caller's chat or stream id is kept under. Ids not of their `form` are
        left as they are: they match nothing (a scoped name always has the form), and cost
        no Redis call."""
        if self.owner is None or not form.fullmatch(key):
            return key
        digest = hashlib.sha256(f"{self.owner}\n{key}".encode()).digest()[:24]
        return base64.urlsafe_b64encode(digest).decode()  # 32 of [A-Za-z0-9_-]


def unauthenticated() -> ApiError:
    return ApiError(
        401,
        "authentication_error",
        "This relay needs `Authorization: Bearer <token>`.",
        {"WWW-Authenticate": "Bearer"},
    )


class Identities:
    """The identity modes configured, and the one way a request is identified."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = _tokens(settings)  # SHA-256 of a token -> its caller's name
        self.jwt = JwtCheck(settings) if settings.jwt_jwks_url or settings.jwt_public_key else None
        self.header = (settings.trusted_user_header or "").lower() or None
        self.configured = bool(self.tokens or self.jwt or self.header)

    @property
    def bearer(self) -> bool:
        """Whether callers send a bearer token (the page asks for one)."""
        return bool(self.tokens or self.jwt)

    async def identify(self, request: Request) -> Caller:
        """The request's caller (401 when identities are configured and it has none)."""
        owner = await self._owner(request)
        if owner is None:
            if self.configured:
                raise unauthenticated()
            return Caller(None, client_key(request))
        return Caller(owner, _printable_key(owner))

    async def _owner(self, request: Request) -> str | None:
        if self.header is not None and request.scope.get(PEER_TRUSTED):
            user = request.headers.get(self.header, "").strip()
            if user:
                return f"user:{user}" if len(user) <= 256 and user.isprintable() else None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        token = given.strip()
        # A digest looked up, not a token compared: the time taken says nothing of a token.
        name = self.tokens.get(hashlib.sha256(token.encode()).digest())
        if name is not None:
            return f"token:{name}"
        if self.jwt is not None:
            subject = await self.jwt.subject(token)
            if subject is not None:
                return f"jwt:{subject}"
        raise unauthenticated()


def _printable_key(owner: str) -> str:
    """An identity as the per-client key and the log line's `client`: as it is when short and
    plain, else its mode and a digest."""
    if len(owner) <= 80 and owner.isascii() and owner.isprintable():
        return owner
    mode = owner.partition(":")[0]
    return f"{mode}:~{hashlib.sha256(owner.encode()).hexdigest()[:16]}"


def _tokens(settings: Settings) -> dict[bytes, str]:
    """RELAY_TOKENS (`name:token` pairs, comma-separated, or `@path` to a file of one a
    line) and RELAY_TOKEN (the caller `default`), by the SHA-256 of each token."""
    pairs: list[str] = []
    if settings.relay_tokens is not None:
        value = settings.relay_tokens.get_secret_value().strip()
        if value.startswith("@"):
            lines = Path(value[1:]).read_text().splitlines()
            pairs = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        else:
            pairs = [pair.strip() for pair in value.split(",") if pair.strip()]
    if settings.relay_token is not None:
        pairs.append(f"default:{settings.relay_token.get_secret_value()}")
    tokens: dict[bytes, str] = {}
    for n, pair in enumerate(pairs):
        name, _, token = pair.partition(":")
        if not NAME.fullmatch(name) or not token.strip():  # never the token in the message
            raise ValueError(f"RELAY_TOKENS: entry {n + 1} is not `name:token`")
        digest = hashlib.sha256(token.strip().encode()).digest()
        if digest in tokens:
            raise ValueError(f"RELAY_TOKENS: entry {n + 1} repeats a token")
        tokens[digest] = name
    return tokens


class NotePeer:
    """ASGI middleware: notes whether the socket's peer is a trusted proxy (one of
    FORWARDED_ALLOW_IPS), then rewrites the client from `X-Forwarded-For` as uvicorn would
    (its own middleware). uvicorn's own rewrite must be off (`python -m app` turns it off),
    or the peer noted is already the forwarded address."""

    def __init__(self, app: object, trusted: str) -> None:
        self.proxy = ProxyHeadersMiddleware(app, trusted)  # type: ignore[arg-type]

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            scope[PEER_TRUSTED] = client is not None and client[0] in self.proxy.trusted_hosts
        await self.proxy(scope, receive, send)  # type: ignore[arg-type]
