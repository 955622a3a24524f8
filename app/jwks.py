"""JWT callers: a token an app's own login handed out, checked by PyJWT against a public key
(JWT_PUBLIC_KEY) or the keys an OIDC provider publishes (JWT_JWKS_URL).

Checked: the signature (asymmetric algorithms only, JWT_ALGORITHMS; `alg: none` and HMAC are
never accepted, so a public key can never be used as a shared secret), expiry (`exp` is
required), JWT_ISSUER and JWT_AUDIENCE when set, and a `sub`, which names the caller.

The key set is fetched when a token names a key not seen yet, or the set is older than
KEYS_LIFESPAN; PyJWT fetches with blocking urllib, so a fetch runs in a thread, one at a
time, and at most once per REFETCH_AFTER whatever key ids callers invent.
"""

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.config import Settings

log = logging.getLogger("chat_relay")

KEYS_LIFESPAN = 300.0  # seconds a fetched key set is used before it is fetched again
REFETCH_AFTER = 30.0  # seconds between fetches for an unknown key id
LEEWAY = 10  # seconds of clock skew allowed on `exp` and `nbf`


class JwtCheck:
    def __init__(self, settings: Settings) -> None:
        self.algorithms = settings.jwt_algorithms
        self.issuer = settings.jwt_issuer or None
        self.audience = settings.jwt_audience or None
        self.static: Any = None
        if settings.jwt_public_key:
            pem = settings.jwt_public_key.strip()
            if pem.startswith("@"):
                pem = Path(pem[1:]).read_text()  # once, at start-up
            self.static = load_pem_public_key(pem.encode())
        self.client = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_jwk_set=False, timeout=5)
            if settings.jwt_jwks_url
            else None
        )
        self.keys: dict[str | None, Any] = {}
        self.fetched = -REFETCH_AFTER  # monotonic time of the last fetch
        self.lock = asyncio.Lock()

    async def subject(self, token: str) -> str | None:
        """The `sub` of a valid token; None for any other."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.static if self.static is not None else await self._key(header.get("kid"))
            if key is None:
                return None
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError:
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 256:
            return None
        return subject

    async def _key(self, kid: str | None) -> Any:
        stale = time.monotonic() - self.fetched > KEYS_LIFESPAN
        if (kid in self.keys or not self._may_fetch()) and not stale:
            return self._pick(kid)
        async with self.lock:  # one fetch at a time; who waited finds its result
            if (kid not in self.keys or stale) and self._may_fetch():
                await self._fetch()
        return self._pick(kid)

    def _may_fetch(self) -> bool:
        return time.monotonic() - self.fetched >= REFETCH_AFTER

    def _pick(self, kid: str | None) -> Any:
        if kid is None and len(self.keys) == 1:  # a provider with one key may name none
            return next(iter(self.keys.values()))
        return self.keys.get(kid)

    async def _fetch(self) -> None:
        assert self.client is not None
        self.fetched = time.monotonic()
        try:
            keys = await anyio.to_thread.run_sync(self.client.get_jwk_set)
        except (jwt.PyJWTError, OSError) as exc:  # the old keys stay
            log.warning("jwt: the key set could not be fetched (%s)", type(exc).__name__)
            return
        self.keys = {key.key_id: key.key for key in keys.keys}
