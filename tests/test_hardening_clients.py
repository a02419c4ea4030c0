"""Who a throttle counts and what an allow list can match (issue 21, item 2):
an IPv4 client is its address, an IPv6 client its ``/64`` (configurable),
``::ffff:a.b.c.d`` is ``a.b.c.d`` everywhere, and allow-list entries that
could never match are normalised or refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import tokenformat
from flask_accesstokens.addresses import allows
from flask_accesstokens.addresses import client_key
from flask_accesstokens.addresses import parse_allow_list
from flask_accesstokens.api import PUBLIC_THROTTLE_KEY
from flask_accesstokens.models import AccessToken
from flask_accesstokens.pipeline import Pipeline

GARBAGE = bearer("bbat_" + "x" * 49)


# -- the key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote_addr", "prefix", "key"),
    [
        ("198.51.100.9", 64, "198.51.100.9"),
        ("::ffff:198.51.100.9", 64, "198.51.100.9"),
        ("::FFFF:c633:6409", 64, "198.51.100.9"),
        ("2001:db8:1:2::2", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::27", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:3::2", 64, "2001:db8:1:3::/64"),
        ("2001:db8:1:2::2", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2::2", 128, "2001:db8:1:2::2/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("fe80::1%eth1", 128, "fe80::1/128"),
        ("unix:/run/app.sock", 64, "unix:/run/app.sock"),
        ("x" * 500, 64, "x" * 100),
        ("", 64, "-"),
        (None, 64, "-"),
    ],
)
def test_client_key(remote_addr: str | None, prefix: int, key: str) -> None:
    assert client_key(remote_addr, prefix) == key


# -- allow lists ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "normal"),
    [
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:198.51.100.7", "198.51.100.7/32"),
        ("::ffff:198.51.100.0/120", "198.51.100.0/24"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::FFFF:C633:6400/120", "198.51.100.0/24"),
        # Not wholly inside the mapped range: an IPv6 network as given.
        ("::/64", "::/64"),
        ("2001:db8::/32", "2001:db8::/32"),
    ],
)
def test_mapped_networks_are_stored_as_ipv4(entry: str, normal: str) -> None:
    assert parse_allow_list([entry]) == (normal,)


def test_a_mapped_entry_and_its_ipv4_spelling_are_one_entry() -> None:
    assert parse_allow_list(["10.0.0.0/8", "::ffff:10.0.0.0/104"]) == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    "entry", ["fe80::1%eth0", "fe80::%eth0/64", "fe80::1%1", "2001:db8::1%25eth0", "fe80::1%"]
)
def test_zone_ids_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="zone id"):
        parse_allow_list([entry])


@pytest.mark.parametrize(
    ("stored", "client", "allowed"),
    [
        # Lists stored before normalisation still match as they meant to.
        ("::ffff:10.0.0.0/104", "10.1.2.3", True),
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", True),
        ("::ffff:10.0.0.0/104", "11.1.2.3", False),
        ("10.0.0.0/8", "::ffff:10.1.2.3", True),
        # A stored zone id is dropped, which only narrows.
        ("fe80::1%eth0", "fe80::1", False),
        ("fe80::1%eth0 10.0.0.0/8", "10.0.0.1", True),
        # A client's zone id is not part of its address.
        ("fe80::/64", "fe80::1%eth0", True),
        ("fe80::1/128", "fe80::1%eth0", True),
        ("fe80::/64", "fe80:0:0:1::1%eth0", False),
    ],
)
def test_allows_normalises_stored_lists_and_clients(
    stored: str, client: str, allowed: bool
) -> None:
    assert allows(stored, client) is allowed


def test_the_json_api_refuses_zone_ids_and_writes_nothing(
    client: Any, tokens: AccessTokens, db: SQLAlchemy
) -> None:
    @tokens.manager_loader
    def alice(resource: Resource) -> str:
        return "alice"

    url = "/api/repositories/acme/api/access-tokens"
    for bad in (["fe80::1%eth0"], ["10.0.0.0/8", "fe80::%eth0/64"]):
        r = client.post(url, json={"name": "CI", "scopes": ["repository"], "allowed_ips": bad})
        assert r.status_code == 400, bad
        assert set(r.get_json()["error"]["fields"]) == {"allowed_ips"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AccessToken)) == 0
    r = client.post(
        url, json={"name": "CI", "scopes": ["repository"], "allowed_ips": ["::ffff:10.0.0.0/104"]}
    )
    assert r.status_code == 201
    assert r.get_json()["allowed_ips"] == ["10.0.0.0/8"]
    secret = r.get_json()["token"]
    for address, status in [("10.9.9.9", 200), ("::ffff:10.9.9.9", 200), ("11.0.0.1", 403)]:
        answer = client.get(
            "/repositories/acme/api",
            headers=bearer(secret),
            environ_base={"REMOTE_ADDR": address},
        )
        assert answer.status_code == status, address


# -- the failure throttle ----------------------------------------------------------------


@pytest.fixture
def throttled(database_uri: str, request: Any) -> Iterator[tuple[Flask, str]]:
    config = getattr(request, "param", {})
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_RATELIMIT="5/minute", **config)
    throttle = Pipeline.of(app).throttle
    assert throttle is not None
    throttle.namespace = f"accesstokens-{uuid.uuid4().hex}"
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        yield app, new.secret
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()


def get(app: Flask, headers: dict[str, str], address: str) -> int:
    response = app.test_client().get(
        "/repositories/acme/api", headers=headers, environ_base={"REMOTE_ADDR": address}
    )
    return response.status_code


def test_one_ipv6_host_gets_one_budget(throttled: tuple[Flask, str]) -> None:
    """The report's case: 38 failures from ``::2`` … ``::27`` of one /64."""
    app, secret = throttled
    statuses = [get(app, GARBAGE, f"2001:db8:1:2::{n:x}") for n in range(2, 40)]
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    # A valid token from that /64 still passes; another /64 has its own budget.
    assert get(app, bearer(secret), "2001:db8:1:2::99") == 200
    assert get(app, GARBAGE, "2001:db8:1:3::2") == 401


def test_the_mapped_spelling_shares_the_ipv4_budget(throttled: tuple[Flask, str]) -> None:
    app, _ = throttled
    for _ in range(5):
        assert get(app, GARBAGE, "198.51.100.9") == 401
    assert get(app, GARBAGE, "::ffff:198.51.100.9") == 429
    assert get(app, GARBAGE, "198.51.100.9") == 429
    assert get(app, GARBAGE, "198.51.100.10") == 401


def test_the_mapped_spelling_first_then_ipv4(throttled: tuple[Flask, str]) -> None:
    app, _ = throttled
    for n in range(5):
        assert get(app, GARBAGE, "::ffff:203.0.113.5" if n % 2 else "203.0.113.5") == 401
    assert get(app, GARBAGE, "203.0.113.5") == 429


def test_zone_ids_do_not_make_budgets(throttled: tuple[Flask, str]) -> None:
    app, _ = throttled
    for n in range(5):
        assert get(app, GARBAGE, f"fe80::{n + 1}%eth{n}") == 401
    assert get(app, GARBAGE, "fe80::77%eth9") == 429


@pytest.mark.parametrize(
    ("throttled", "shared"),
    [
        ({"ACCESSTOKENS_RATELIMIT_IPV6_PREFIX": 128}, False),
        ({"ACCESSTOKENS_RATELIMIT_IPV6_PREFIX": 56}, True),
        ({"ACCESSTOKENS_RATELIMIT_IPV6_PREFIX": 48}, True),
    ],
    indirect=["throttled"],
    ids=["128", "56", "48"],
)
def test_the_prefix_is_configurable(throttled: tuple[Flask, str], shared: bool) -> None:
    app, _ = throttled
    # Five addresses of one /64 but different /128s, then a sixth.
    for n in range(5):
        assert get(app, GARBAGE, f"2001:db8:1:2::{n + 1}") == 401
    assert get(app, GARBAGE, "2001:db8:1:2::99") == (429 if shared else 401)
    # Within the configured prefix, another /64 shares it too.
    assert get(app, GARBAGE, "2001:db8:1:20::1") == (429 if shared else 401)


# -- public revocation's throttle ------------------------------------------------------------


@pytest.fixture
def revocation(database_uri: str) -> Iterator[Flask]:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_PUBLIC_REVOCATION_LIMIT="3/minute")
    with app.app_context():
        yield app
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()


def revoke(app: Flask, address: str) -> int:
    response = app.test_client().post(
        "/api/access-tokens/revoke",
        json={"access_tokens": [tokenformat.generate("bbat")]},
        environ_base={"REMOTE_ADDR": address},
        buffered=True,
    )
    return response.status_code


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6::3"], "2001:db8:5:6::ffff"),
        (["192.0.2.7", "192.0.2.7", "192.0.2.7"], "::ffff:192.0.2.7"),
        (["::ffff:192.0.2.8", "192.0.2.8", "::ffff:c000:208"], "192.0.2.8"),
    ],
    ids=["one-64", "mapped-after-ipv4", "mixed-spellings"],
)
def test_public_revocation_counts_normalised_clients(
    revocation: Flask, first: list[str], then: str
) -> None:
    assert [revoke(revocation, address) for address in first] == [202, 202, 202]
    assert revoke(revocation, then) == 429
    # Another /64 and another IPv4 address are not held back.
    assert revoke(revocation, "2001:db8:5:7::1") == 202
    assert revoke(revocation, "192.0.2.99") == 202
    throttle = revocation.extensions[PUBLIC_THROTTLE_KEY]
    assert throttle.ipv6_prefix == 64
