"""RFC 7662 introspection: client authentication (constant time, throttled),
the answers for live and dead tokens, and fastmcp's real verifier against a
real HTTP server with its cache off."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import make_app
from werkzeug.serving import make_server

from flask_accesstokens import AccessTokens
from flask_accesstokens import canary_tripped

URL = "/api/access-tokens/introspect"
CLIENT, SECRET = "mcp-server", "correct horse battery staple"
CONFIG = {"ACCESSTOKENS_INTROSPECTION_CLIENTS": {CLIENT: SECRET}}


@pytest.fixture
def parts(database_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    app, db, tokens = make_app(database_uri, **CONFIG)
    with app.app_context():
        yield app, db, tokens
        AccessTokens.dispose_connections()
        db.session.remove()
        db.engine.dispose()


def basic(client_id: str = CLIENT, secret: str = SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def introspect(app: Flask, token: str | None, **headers: str) -> Any:
    data = {} if token is None else {"token": token, "token_type_hint": "access_token"}
    return app.test_client().post(URL, data=data, headers=headers or basic(), buffered=True)


def test_a_live_token(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> None:
    app, _, tokens = parts
    expires = datetime.now(timezone.utc) + timedelta(days=3)
    new = tokens.create_token(
        name="mcp",
        workspace="acme",
        repository="api",
        scopes=["pullrequest:write"],
        expires_at=expires,
    )
    response = introspect(app, new.secret)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    created = new.token.created_at
    assert body == {
        "active": True,
        # The implied closure: a flat-subset verifier asking for "repository" passes.
        "scope": "pullrequest pullrequest:write repository repository:write",
        "client_id": new.token.id,
        "token_type": "Bearer",
        "exp": int(expires.timestamp()),
        "iat": int(created.timestamp()),
        "sub": new.token.id,
        "resource": {"workspace": "acme", "repository": "api"},
    }
    project = tokens.create_token(name="p", workspace="acme", project="API", scopes=["project"])
    answer = introspect(app, project.secret).get_json()
    assert "exp" not in answer
    assert answer["resource"] == {"workspace": "acme", "project": "API"}


def test_dead_tokens_are_inactive_and_nothing_else(
    parts: tuple[Flask, SQLAlchemy, AccessTokens],
) -> None:
    app, _, tokens = parts
    revoked = tokens.create_token(name="r", workspace="acme", scopes=["repository"])
    tokens.revoke_token(revoked.token.id)
    expired = tokens.create_token(
        name="e",
        workspace="acme",
        scopes=["repository"],
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=1),
    )
    pinned = tokens.create_token(
        name="p", workspace="acme", scopes=["repository"], allowed_ips=["127.0.0.1"]
    )
    time.sleep(1.1)
    for token in (revoked.secret, expired.secret, pinned.secret, "bbat_unknown", "x" * 5000):
        response = introspect(app, token)
        assert response.status_code == 200
        assert response.get_json() == {"active": False}
        assert response.headers["Cache-Control"] == "no-store"


def test_a_canary_is_inactive_and_trips_its_alarm(
    parts: tuple[Flask, SQLAlchemy, AccessTokens],
) -> None:
    app, _, tokens = parts
    canary = tokens.create_canary(name="decoy", workspace="acme", repository="api")
    seen: list[Any] = []
    with canary_tripped.connected_to(lambda sender, **kw: seen.append(kw), app):
        assert introspect(app, canary.secret).get_json() == {"active": False}
    assert [s["token"].id for s in seen] == [canary.token.id]


def test_client_authentication(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> None:
    app, _, tokens = parts
    secret = tokens.create_token(name="t", workspace="acme", scopes=["repository"]).secret
    for headers in (
        {},
        basic(secret="wrong"),
        basic(client_id="nobody"),
        basic(secret=SECRET + "x"),
        {"Authorization": "Bearer " + secret},  # a token is not a client
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no colon").decode()},
    ):
        response = app.test_client().post(URL, data={"token": secret}, headers=headers)
        assert response.status_code == 401, headers
        assert response.get_json() == {"error": "invalid_client"}
        assert response.headers["WWW-Authenticate"] == 'Basic realm="api"'
        assert SECRET not in response.get_data(as_text=True)


def test_failed_client_authentication_is_throttled(
    parts: tuple[Flask, SQLAlchemy, AccessTokens],
) -> None:
    app, _, tokens = parts
    secret = tokens.create_token(name="t", workspace="acme", scopes=["repository"]).secret
    client = app.test_client()
    statuses = [
        client.post(URL, data={"token": secret}, headers=basic(secret="guess")).status_code
        for _ in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    throttled = client.post(URL, data={"token": secret}, headers=basic(secret="guess"))
    assert int(throttled.headers["Retry-After"]) > 0
    # The real client is never refused for someone else's guesses.
    assert client.post(URL, data={"token": secret}, headers=basic()).get_json()["active"]


def test_without_a_token_it_is_invalid_request(
    parts: tuple[Flask, SQLAlchemy, AccessTokens],
) -> None:
    app, _, _ = parts
    client = app.test_client()
    for data, kind in (
        ({}, None),
        ({"token": ""}, None),
        ({"token_type_hint": "access_token"}, None),
        ('{"token": "x"}', "application/json"),
        ("token=a&token=b", "application/x-www-form-urlencoded"),
        ("token=" + "x" * 20_000, "application/x-www-form-urlencoded"),
        (b"token=\xff", "application/x-www-form-urlencoded"),
    ):
        response = client.post(URL, data=data, headers=basic(), content_type=kind)
        assert response.status_code == 400, data
        assert response.get_json() == {"error": "invalid_request"}
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get(URL, headers=basic()).status_code == 405


def test_clients_are_checked_and_kept_as_digests(database_uri: str) -> None:
    for bad in (
        {"a:b": "a long enough secret"},
        {"": "a long enough secret"},
        {"short": "tiny"},
        {"x": 42},
        ["not", "a", "mapping"],
    ):
        with pytest.raises(ValueError, match="ACCESSTOKENS_INTROSPECTION_CLIENTS"):
            make_app(database_uri, ACCESSTOKENS_INTROSPECTION_CLIENTS=bad)
    app, db, _ = make_app(database_uri, **CONFIG)
    with app.app_context():
        from flask_accesstokens.state import app_state

        kept = app_state().settings.introspection_clients
        assert set(kept) == {CLIENT} and SECRET.encode() not in kept[CLIENT]
        AccessTokens.dispose_connections()
        db.session.remove()
        db.engine.dispose()


# -- fastmcp's verifier, over HTTP -----------------------------------------------------


@pytest.fixture
def served(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> Iterator[str]:
    app = parts[0]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}{URL}"
    server.shutdown()
    thread.join(timeout=10)


def test_fastmcp_verifier_sees_scopes_binding_and_revocation_at_once(
    parts: tuple[Flask, SQLAlchemy, AccessTokens], served: str
) -> None:
    introspection = pytest.importorskip(
        "fastmcp.server.auth.providers.introspection", reason="fastmcp is in the test extra"
    )
    _, _, tokens = parts

    def verifier(*required: str) -> Any:
        return introspection.IntrospectionTokenVerifier(
            introspection_url=served,
            client_id=CLIENT,
            client_secret=SECRET,
            required_scopes=list(required),
            cache_ttl_seconds=0,
        )

    new = tokens.create_token(
        name="mcp", workspace="acme", repository="api", scopes=["pullrequest:write"]
    )
    verified = asyncio.run(verifier("repository").verify_token(new.secret))
    assert verified is not None
    assert verified.client_id == new.token.id
    assert "repository" in verified.scopes  # implied by pullrequest:write
    assert verified.claims["resource"] == {"workspace": "acme", "repository": "api"}
    assert asyncio.run(verifier("pipeline").verify_token(new.secret)) is None
    assert asyncio.run(verifier().verify_token("bbat_not_a_token")) is None
    wrong = introspection.IntrospectionTokenVerifier(
        introspection_url=served, client_id=CLIENT, client_secret="not the secret at all"
    )
    assert asyncio.run(wrong.verify_token(new.secret)) is None

    same = verifier("repository")
    for _ in range(3):
        assert asyncio.run(same.verify_token(new.secret)) is not None
    tokens.revoke_token(new.token.id)
    assert asyncio.run(same.verify_token(new.secret)) is None
