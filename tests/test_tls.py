"""The relay against an HTTPS upstream (as the real API is): the handshake, a whole stream,
backpressure, a prompt close on cancellation, a bad certificate."""

import asyncio
import ssl

import pytest
import trustme

from tests.fake_upstream import FakeUpstream, answer, message_end, message_start
from tests.support import PROMPTLY, RawClient, close_latency, post_chat, read_a_flood_late


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_upstream(ca, server_loop, tmp_path, monkeypatch):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    upstream = FakeUpstream(ssl=server_context)
    server_loop.run(upstream.start())
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    # The relay's client is built at startup and trusts what SSL_CERT_FILE names.
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    yield upstream
    server_loop.run(upstream.stop())


def test_streams_over_tls(make_relay, tls_upstream):
    tls_upstream.push(answer("over ", "TLS"))
    relay = make_relay(anthropic_base_url=tls_upstream.url)
    reply = post_chat(relay)
    assert reply.events == ["start", "delta", "delta", "done"]
    assert reply.text_out == "over TLS"


def test_cancellation_closes_a_tls_upstream_at_once(make_relay, tls_upstream, server_loop):
    # A TLS close waits for the peer's close_notify; the relay aborts instead.
    tls_upstream.by_message["cancel me"] = answer(*[f"w{i} " for i in range(300)], delay=0.02)
    relay = make_relay(anthropic_base_url=tls_upstream.url)

    async def run() -> RawClient:
        client = RawClient(relay.url, "cancel me")
        await client.open()
        await client.read_until(b"event: delta", 3)
        client.hang_up()
        return client

    client = asyncio.run(run())
    assert close_latency(tls_upstream, server_loop, client) < PROMPTLY


def test_an_untrusted_certificate_is_refused(make_relay, tls_upstream, monkeypatch, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    relay = make_relay(anthropic_base_url=tls_upstream.url, upstream_retries=0)
    reply = post_chat(relay)
    assert reply.status == 502
    assert reply.json()["error"]["type"] == "upstream_error"
    assert tls_upstream.requests == []


def test_a_slow_reader_gets_the_whole_answer_over_tls(make_relay, tls_upstream, server_loop):
    # Backpressure must resume reading once the caller reads again, over TLS as over plain
    # HTTP: nothing lost, no idle timeout while the relay waits for the caller.
    count = 100_000  # ~40 MB: far beyond the socket buffers on both sides
    tls_upstream.default = [message_start(), ("flood", count, "x" * 300), *message_end()]
    relay = make_relay(anthropic_base_url=tls_upstream.url)
    stalled_at, total, deltas = asyncio.run(read_a_flood_late(relay, tls_upstream, server_loop))
    print(f"\nTLS upstream stalled after {stalled_at / 1e6:.1f} of {total / 1e6:.1f} MB")
    assert stalled_at < total / 2, "the relay kept reading for a reader that did not read"
    assert deltas == count
