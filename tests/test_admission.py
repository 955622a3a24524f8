"""Who may open a stream: the per-client key, the host names served, and browsers' origins
(the token and the limits over the network are in test_production.py)."""

import httpx2
import pytest

from app.admission import address_key, host_allowed


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64, same key
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64 is another client
        ("::ffff:198.51.100.9", "198.51.100.9"),
        ("testclient", "testclient"),
        ("x" * 1000, "x" * 64),
    ],
)
def test_the_key_is_the_address_or_its_ipv6_64(host, key):
    assert address_key(host) == key


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("127.0.0.1:8000", [], True),
        ("[::1]:8000", [], True),
        ("localhost:8000", [], True),
        ("evil.example:8000", [], False),
        ("chat.example.com", ["chat.example.com"], True),
        ("CHAT.example.com:443", ["chat.example.com"], True),
        ("evil.example", ["chat.example.com"], False),
        ("anything.example", ["*"], True),
    ],
)
def test_host_names_the_relay_serves(host, allowed, ok):
    assert host_allowed(host, allowed) is ok


def cross_site_post(relay, headers: dict[str, str]) -> httpx2.Response:
    # What a page can send without a preflight: a "simple" request with a text/plain body.
    return httpx2.post(
        f"{relay.url}/api/chat",
        content=b'{"message": "spend their key"}',
        headers={"content-type": "text/plain", **headers},
        timeout=10,
    )


def test_a_cross_site_page_cannot_use_the_relay(relay, upstream):
    reply = cross_site_post(relay, {"origin": "https://evil.example"})
    assert reply.status_code == 403 and reply.json()["error"]["type"] == "forbidden"
    assert upstream.requests == []


def test_dns_rebinding_is_refused_by_host(relay, upstream):
    port = relay.url.rsplit(":", 1)[1]
    rebound = {"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"}
    assert cross_site_post(relay, rebound).status_code == 403
    assert upstream.requests == []


def test_the_relays_own_page_curl_and_listed_origins_pass(make_relay, upstream):
    relay = make_relay(cors_origins="https://app.example", allowed_hosts="*")
    assert cross_site_post(relay, {}).status_code == 200  # curl: no Origin
    assert cross_site_post(relay, {"origin": relay.url}).status_code == 200  # same origin
    assert cross_site_post(relay, {"origin": "https://app.example"}).status_code == 200
    assert (
        cross_site_post(
            relay, {"host": "relay.example", "origin": "http://relay.example"}
        ).status_code
        == 200
    )
    assert cross_site_post(relay, {"origin": "null"}).status_code == 403
