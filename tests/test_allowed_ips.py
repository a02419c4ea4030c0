"""Client address allow lists: validated at creation, decided on every route
before scope and binding, the same 403 everywhere."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.addresses import allows
from flask_accesstokens.addresses import parse_allow_list
from flask_accesstokens.models import AccessToken

NETS = ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]


def _from(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_lists_are_normalised_and_strict() -> None:
    assert parse_allow_list(NETS) == ("203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32")
    assert parse_allow_list(["2001:DB8:0::1"]) == ("2001:db8::1/128",)
    assert parse_allow_list(["10.0.0.0/8", "10.0.0.0/8"]) == ("10.0.0.0/8",)
    for bad in (["10.0.0.1/8"], [], ["nope"], ["10.0.0.0/33"], [""], [5], "10.0.0.0/8"):
        with pytest.raises(ValueError):
            parse_allow_list(bad)  # type: ignore[arg-type]


def test_allows_fails_closed() -> None:
    stored = "203.0.113.0/24 2001:db8::/32"
    assert allows(stored, "203.0.113.200")
    assert allows(stored, "2001:db8:1::5")
    assert allows(stored, "::ffff:203.0.113.9")  # IPv4-mapped counts as IPv4
    assert not allows(stored, "203.0.114.1")
    assert not allows(stored, "2001:db9::1")
    assert not allows(stored, None)
    assert not allows(stored, "")
    assert not allows(stored, "unix:socket")


def test_create_validates_and_writes_nothing_when_bad(
    app: Flask, tokens: AccessTokens, db: SQLAlchemy
) -> None:
    for bad in (["10.0.0.1/8"], [], ["999.1.1.1"]):
        with pytest.raises(ValueError) as info:
            tokens.create_token(
                name="CI", workspace="acme", repository="api", scopes=["repository"],
                allowed_ips=bad,
            )  # fmt: skip
        assert getattr(info.value, "field", None) == "allowed_ips"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AccessToken)) == 0
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"], allowed_ips=NETS
    )
    assert new.token.allowed_networks == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    anywhere = tokens.create_token(
        name="any", workspace="acme", repository="api", scopes=["repository"]
    )
    assert anywhere.token.allowed_networks is None


def test_requests_inside_pass_outside_get_the_same_403_everywhere(
    client: Any, tokens: AccessTokens
) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"], allowed_ips=NETS
    )
    auth = bearer(new.secret)
    assert (
        client.get("/repositories/acme/api", headers=auth, **_from("203.0.113.5")).status_code
        == 200
    )
    assert (
        client.get("/repositories/acme/api", headers=auth, **_from("2001:db8::9")).status_code
        == 200
    )
    assert (
        client.get("/repositories/acme/api", headers=auth, **_from("198.51.100.7")).status_code
        == 200
    )
    answers = [
        client.get("/repositories/acme/api", headers=auth, **_from("192.0.2.1")),
        client.post("/repositories/acme/api/push", headers=auth, **_from("192.0.2.1")),  # scope
        client.get("/repositories/acme/web", headers=auth, **_from("192.0.2.1")),  # binding
        client.get("/api/access-tokens/self", headers=auth, **_from("192.0.2.1")),
        client.get("/repositories/acme/api", headers=auth, **_from("198.51.100.8")),
        client.get("/repositories/acme/api", headers=auth, **_from("2001:db9::1")),
    ]
    first = answers[0]
    assert first.status_code == 403
    assert first.get_json() == {
        "type": "error",
        "error": {"message": "This access token cannot be used from your IP address."},
    }
    for answer in answers:
        assert answer.status_code == 403
        assert answer.get_json() == first.get_json()
        assert "WWW-Authenticate" not in answer.headers
        for name in ("X-OAuth-Scopes", "X-Accepted-OAuth-Scopes", "X-Credential-Type"):
            assert name not in answer.headers


def test_refused_use_records_nothing(client: Any, tokens: AccessTokens, db: SQLAlchemy) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"],
        allowed_ips=["203.0.113.0/24"],
    )  # fmt: skip
    r = client.get("/repositories/acme/api", headers=bearer(new.secret), **_from("192.0.2.1"))
    assert r.status_code == 403
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None
    assert record.last_used_at is None and record.recent_clients == []


def test_kept_on_rotation(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"],
        allowed_ips=["203.0.113.0/24"],
    )  # fmt: skip
    rotated = tokens.rotate_token(new.token.id)
    assert rotated is not None
    assert rotated.token.allowed_networks == ["203.0.113.0/24"]
    auth = bearer(rotated.secret)
    assert (
        client.get("/repositories/acme/api", headers=auth, **_from("192.0.2.1")).status_code == 403
    )
    assert (
        client.get("/repositories/acme/api", headers=auth, **_from("203.0.113.1")).status_code
        == 200
    )


def test_json_api_takes_and_shows_the_list(client: Any, tokens: AccessTokens) -> None:
    @tokens.manager_loader
    def alice(resource: Resource) -> str:
        return "alice"

    url = "/api/repositories/acme/api/access-tokens"
    r = client.post(url, json={"name": "CI", "scopes": ["repository"], "allowed_ips": NETS})
    assert r.status_code == 201
    assert r.get_json()["allowed_ips"] == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    r = client.post(url, json={"name": "CI", "scopes": ["repository"], "allowed_ips": None})
    assert r.status_code == 201 and r.get_json()["allowed_ips"] is None
    r = client.post(url, json={"name": "CI", "scopes": ["repository"]})
    assert r.status_code == 201 and r.get_json()["allowed_ips"] is None
    before = client.get(url).get_json()["size"]
    for bad in (["10.0.0.1/8"], [], "10.0.0.0/8", [1], ["fe80::/200"]):
        r = client.post(url, json={"name": "CI", "scopes": ["repository"], "allowed_ips": bad})
        assert r.status_code == 400, bad
        assert set(r.get_json()["error"]["fields"]) == {"allowed_ips"}
    assert client.get(url).get_json()["size"] == before


@pytest.mark.parametrize("proxied", [True, False])
def test_proxyfix_decides_the_address(database_uri: str, proxied: bool) -> None:
    app, db, tokens = make_app(database_uri)
    if proxied:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"],
            allowed_ips=["203.0.113.0/24"],
        )  # fmt: skip
        client = app.test_client()
        headers = {**bearer(new.secret), "X-Forwarded-For": "192.0.2.9, 203.0.113.4"}
        r = client.get("/repositories/acme/api", headers=headers, **_from("10.0.0.1"))
        # With ProxyFix(x_for=1) the last X-Forwarded-For entry counts (the
        # one the trusted proxy added); without it, the peer does.
        assert r.status_code == (200 if proxied else 403)
        spoofed = {**bearer(new.secret), "X-Forwarded-For": "203.0.113.4, 192.0.2.9"}
        r = client.get("/repositories/acme/api", headers=spoofed, **_from("10.0.0.1"))
        assert r.status_code == 403
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_lookup_needs_no_extra_query(
    app: Flask, client: Any, tokens: AccessTokens, db: SQLAlchemy
) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"],
        allowed_ips=["203.0.113.0/24"],
    )  # fmt: skip
    auth = bearer(new.secret)
    client.get("/repositories/acme/api", headers=auth, **_from("203.0.113.1"))  # first use writes
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        for _ in range(5):
            r = client.get("/repositories/acme/api", headers=auth, **_from("203.0.113.1"))
            assert r.status_code == 200
            r = client.get("/repositories/acme/api", headers=auth, **_from("192.0.2.1"))
            assert r.status_code == 403
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
    writes = [s for s in seen if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert len(writes) <= 1  # at most the aggregated audit of the refusals
