"""Callers' identities (app/identity.py, app/jwks.py): named tokens, JWTs, a trusted proxy's
header; and every running answer belongs to the caller that started it, in one process and
across replicas through Redis."""

import json
import statistics
import time
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.main import create_app
from tests.fake_upstream import answer
from tests.support import (
    WORDS,
    QuietHandler,
    frames_with_ids,
    post_chat,
    relay_settings,
    serve_http,
    ui_body,
    ui_chunks,
)

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
TOKENS = f"alice:{ALICE},bob:{BOB}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def start_resumable(url: str, headers: dict[str, str], body: dict | None = None) -> str:
    """POST a resumable chat, read its first delta, drop the connection: its stream id."""
    payload = body or {"message": "resume me", "resumable": True}
    lines: list[str] = []
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("POST", f"{url}/api/chat", json=payload, headers=headers) as reply,
    ):
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            lines.append(line)
            if line.startswith("event: delta") or '"text-delta"' in line:
                break
    if body is not None:  # a useChat body: named by its chat id
        return body["id"]
    start = next(line for line in lines if '"stream_id"' in line)
    return json.loads(start.removeprefix("data: "))["stream_id"]


# ---- named tokens ----------------------------------------------------------------------


def test_each_named_token_is_a_caller_and_relay_token_is_one_more(make_relay, tmp_path):
    relay = make_relay(relay_tokens=TOKENS, relay_token="the-old-one-0123")
    for token in (ALICE, BOB, "the-old-one-0123"):
        assert post_chat(relay, headers=bearer(token)).status == 200
    for headers in ({}, bearer("alice-token"), {"authorization": f"Basic {ALICE}"}):
        reply = post_chat(relay, headers=headers)
        assert reply.status == 401 and reply.json()["error"]["type"] == "authentication_error"
    assert httpx2.get(f"{relay.url}/api/config").json()["auth"] is True
    listed = tmp_path / "tokens"
    listed.write_text(f"# callers\nalice:{ALICE}\n\nbob:{BOB}\n")
    from_file = make_relay(relay_tokens=f"@{listed}")
    assert post_chat(from_file, headers=bearer(BOB)).status == 200
    assert post_chat(from_file, headers=bearer("nobody")).status == 401


@pytest.mark.parametrize("tokens", ["alice", "al ice:x", f"alice:{ALICE},bob:{ALICE}"])
def test_a_bad_token_list_stops_the_start_without_naming_a_token(tokens):
    with pytest.raises(ValueError) as refused:
        create_app(relay_settings(relay_tokens=tokens))
    assert ALICE not in str(refused.value)


def test_per_client_limits_count_by_identity(make_relay, upstream):
    relay = make_relay(relay_tokens=TOKENS, max_streams_per_client=1)
    upstream.push(answer(*WORDS, delay=0.1))
    start_resumable(relay.url, bearer(ALICE))  # running, detached: it keeps its slot
    assert post_chat(relay, headers=bearer(ALICE)).status == 429
    upstream.push(answer("Hi"))
    assert post_chat(relay, headers=bearer(BOB)).status == 200  # the same address


# ---- whose answer ----------------------------------------------------------------------


def test_another_callers_stream_id_is_an_unknown_one(make_relay, upstream):
    relay = make_relay(relay_tokens=TOKENS)
    upstream.push(answer(*WORDS, delay=0.05))
    stream_id = start_resumable(relay.url, bearer(ALICE))
    unknown = "u" * 32
    for method in ("GET", "DELETE"):
        theirs = httpx2.request(method, f"{relay.url}/api/chat/{stream_id}", headers=bearer(BOB))
        none = httpx2.request(method, f"{relay.url}/api/chat/{unknown}", headers=bearer(BOB))
        assert (theirs.status_code, theirs.content) == (none.status_code, none.content)
        assert theirs.status_code == 404
    mine = httpx2.get(f"{relay.url}/api/chat/{stream_id}", headers=bearer(ALICE), timeout=10)
    frames = frames_with_ids(mine.text.split("\n"))
    assert frames[-1][1] == "done", "Bob's DELETE must have left it running"

    # Nothing to tell them apart by time either: the same lookup, of a name that is not
    # there. Interleaved, on one connection, so the machine's noise falls on both alike.
    times: dict[str, list[float]] = {stream_id: [], unknown: []}
    with httpx2.Client(timeout=10, headers=bearer(BOB)) as client:
        for _ in range(40):
            for stream in times:
                started = time.perf_counter()
                client.get(f"{relay.url}/api/chat/{stream}")
                times[stream].append(time.perf_counter() - started)
    theirs_ms = statistics.median(times[stream_id]) * 1000
    unknown_ms = statistics.median(times[unknown]) * 1000
    print(f"another's stream id: {theirs_ms:.2f} ms; an unknown one: {unknown_ms:.2f} ms")
    assert abs(theirs_ms - unknown_ms) < 2  # generous: the paths are the same


def test_another_callers_chat_is_left_alone(make_relay, upstream):
    relay = make_relay(relay_tokens=TOKENS)
    chat = "chatShared0123456789"
    upstream.push(answer(*WORDS, delay=0.05))
    start_resumable(relay.url, bearer(ALICE), ui_body(chat, resumable=True))
    url = f"{relay.url}/api/chat/{chat}/stream"
    assert httpx2.get(url, headers=bearer(BOB)).status_code == 204  # as for an unknown chat
    assert httpx2.delete(url, headers=bearer(BOB)).status_code == 204
    # Bob's own answer under the same chat id: his, and Alice's goes on.
    upstream.push(answer("Bob's"))
    reply = post_chat(relay, ui_body(chat, resumable=True), headers=bearer(BOB))
    assert reply.status == 200
    with httpx2.stream("GET", url, headers=bearer(ALICE), timeout=10) as alices:
        assert alices.status_code == 200
        chunks = ui_chunks(alices.read().decode())
    text = "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")
    assert text == "".join(WORDS) and chunks[-1] == "[DONE]"
    assert not any(isinstance(c, dict) and c["type"] == "abort" for c in chunks)


def test_without_identities_a_chat_id_is_the_capability(relay, upstream):
    # Today's behaviour, which the README states: anyone with the id reads the answer.
    upstream.push(answer(*WORDS, delay=0.02))
    stream_id = start_resumable(relay.url, {})
    assert httpx2.get(f"{relay.url}/api/chat/{stream_id}", timeout=10).status_code == 200


def test_across_replicas_an_answer_stays_its_callers(make_replica, redis_server, upstream):
    env = {"REDIS_URL": redis_server.url, "RELAY_TOKENS": TOKENS}
    a, b = make_replica(**env)[1], make_replica(**env)[1]
    upstream.push(answer(*WORDS, delay=0.05))
    stream_id = start_resumable(a, bearer(ALICE))
    assert httpx2.get(f"{b}/api/chat/{stream_id}", headers=bearer(BOB)).status_code == 404
    assert httpx2.delete(f"{b}/api/chat/{stream_id}", headers=bearer(BOB)).status_code == 404
    mine = httpx2.get(f"{b}/api/chat/{stream_id}", headers=bearer(ALICE), timeout=10)
    assert frames_with_ids(mine.text.split("\n"))[-1][1] == "done"


# ---- JWT -------------------------------------------------------------------------------


class Jwks:
    """An OIDC provider's key set on 127.0.0.1, counting its fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys, self.fetches = keys, 0
        jwks = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                self.answer(json.dumps({"keys": jwks.keys}).encode(), "application/json")

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"


@pytest.fixture
def signer():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    provider = Jwks([{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}])
    yield key, provider
    provider.server.shutdown()


def token(key: Any, alg: str = "RS256", kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "user-42", "iss": "https://login.example", "aud": "chat-relay"}
    payload |= {"iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, alg, {"kid": kid})


def test_a_jwt_names_its_caller_and_every_bad_one_is_401(make_relay, signer, upstream):
    key, provider = signer
    relay = make_relay(
        jwt_jwks_url=provider.url, jwt_issuer="https://login.example", jwt_audience="chat-relay"
    )
    assert post_chat(relay, headers=bearer(token(key))).status == 200
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unsigned = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, None, "none")
    bad = {
        "expired": token(key, exp=int(time.time()) - 60),
        "unsigned": unsigned,
        "wrongly signed": token(other),
        "wrong audience": token(key, aud="another-app"),
        "wrong issuer": token(key, iss="https://evil.example"),
        "no expiry": token(key, exp=None),
        "no subject": token(key, sub=None),
        "an unknown key": token(key, kid="k-invented"),
        "garbage": "a.b.c",
    }
    for why, value in bad.items():
        reply = post_chat(relay, headers=bearer(value))
        assert reply.status == 401, why
    # The key set was fetched once for all of that (unknown key ids do not force fetches).
    assert provider.fetches == 1


def test_a_jwt_checked_against_a_public_key(make_relay, upstream, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    relay = make_relay(jwt_public_key=f"@{tmp_path / 'key.pem'}")
    assert post_chat(relay, headers=bearer(token(key, "ES256", aud=None))).status == 200
    hmac = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "s" * 32, "HS256")
    assert post_chat(relay, headers=bearer(hmac)).status == 401


def test_hmac_and_none_are_refused_as_algorithms():
    for algorithms in ("HS256", "RS256,none"):
        with pytest.raises(ValueError):
            relay_settings(jwt_algorithms=algorithms)


# ---- a trusted proxy's header ----------------------------------------------------------


def test_a_proxys_user_header_is_believed_only_from_a_trusted_proxy(
    make_relay, upstream, relay_log
):
    # As `python -m app` runs: uvicorn leaves the client alone, the app notes the peer and
    # rewrites it from X-Forwarded-For. The test's client is the proxy on 127.0.0.1.
    proxied = {"x-forwarded-user": "alice@example.com", "x-forwarded-for": "203.0.113.9"}
    behind = make_relay(trusted_user_header="X-Forwarded-User", server={"proxy_headers": False})
    assert post_chat(behind, headers=proxied).status == 200
    assert relay_log.chats[0]["client"] == "user:alice@example.com"
    assert post_chat(behind).status == 401  # no header: no identity
    # From an address outside FORWARDED_ALLOW_IPS, the header is just a header.
    outside = make_relay(
        trusted_user_header="X-Forwarded-User",
        forwarded_allow_ips="10.9.9.9",
        server={"proxy_headers": False},
    )
    assert post_chat(outside, headers=proxied).status == 401
