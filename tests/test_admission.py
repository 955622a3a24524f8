"""Who may open a stream: the per-client key (unit tests; the limits over the network are in
test_production.py)."""

import pytest

from app.admission import address_key


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
