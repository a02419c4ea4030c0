"""Real nginx (``auth_request``) and real Caddy (``forward_auth``) in front of
gunicorn and an echo upstream, from the configs in ``examples/gateways/`` as
they are: allowed requests arrive with the token's identity, refused ones
never arrive, a revoked token is refused from the moment ``revoke_token``
returns, and a client cannot forge the identity headers."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from gateway_servers import binary
from gateway_servers import echo_upstream
from gateway_servers import GATEWAYS
from gateway_servers import gunicorn
from gateway_servers import Upstream
from helpers import bearer
from helpers import make_app
from services import fresh_schema
from services import in_ci
from services import postgresql_url

from flask_accesstokens import AccessTokens

#: Revocations per gateway; both gateways together make at least 100.
REVOCATIONS = 60


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PostgreSQL when configured, else a SQLite file both processes share."""
    url = postgresql_url()
    if url is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'tokens.sqlite'}"
        return
    with fresh_schema(url) as schema_url:
        yield schema_url


@pytest.fixture(scope="module")
def tokens(database: str) -> Iterator[AccessTokens]:
    """The test's own app on the same database: it creates the tables before
    gunicorn starts, and creates and revokes tokens."""
    app, db, tokens = make_app(database)
    with app.app_context():
        yield tokens
        AccessTokens.dispose_connections()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def check_port(
    tokens: AccessTokens, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    with gunicorn(database, tmp_path_factory.mktemp("gunicorn")) as port:
        yield port


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with echo_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module", params=sorted(GATEWAYS))
def gateway(
    request: pytest.FixtureRequest,
    check_port: int,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    name: str = request.param
    if binary(name) is None:
        reason = f"{name} is not installed (Debian package {name!r}; .ci/run installs it)"
        if in_ci():
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    folder: Path = tmp_path_factory.mktemp(name)
    with GATEWAYS[name](check_port, upstream.port, folder) as port:
        yield port


def send(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    """One request, with the path exactly as given (no normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def arrivals(upstream: Upstream, path: str) -> int:
    return sum(1 for seen in upstream.seen if seen.path == path)


def test_an_allowed_request_arrives_with_the_tokens_identity(
    gateway: int, upstream: Upstream, tokens: AccessTokens
) -> None:
    new = tokens.create_token(
        name="svc", workspace="acme", repository="api", scopes=["pipeline:write"]
    )
    forged = {
        "X-Token-Id": "forged",
        "X-Token-Type": "workspace",
        "X-Token-Scopes": "account project:admin",
        "X-Token-Resource": "workspace=hobby",
    }
    path = f"/svc/acme/api/builds?gateway={gateway}"
    response = send(gateway, "GET", path, {**bearer(new.secret), **forged})
    assert response.status == 200
    seen = [s for s in upstream.seen if s.path == path]
    assert len(seen) == 1
    assert seen[0].one("X-Token-Id") == new.token.id
    assert seen[0].one("X-Token-Type") == "repository"
    assert seen[0].one("X-Token-Scopes") == "pipeline pipeline:write"
    resource = seen[0].one("X-Token-Resource")
    assert resource is not None
    assert dict(parse_qsl(resource)) == {"workspace": "acme", "repository": "api"}
    accented = tokens.create_token(
        name="é", workspace="acme", repository="josé", scopes=["pipeline"]
    )
    path = f"/svc/acme/jos%C3%A9/builds?gateway={gateway}"
    assert send(gateway, "GET", path, bearer(accented.secret)).status == 200
    seen = [s for s in upstream.seen if s.path == path]
    assert seen[0].one("X-Token-Resource") == "workspace=acme&repository=jos%C3%A9"
    post = f"/svc/acme/api/builds?post={gateway}"
    assert send(gateway, "POST", post, bearer(new.secret)).status == 200
    assert arrivals(upstream, post) == 1


def test_refused_requests_never_arrive(
    gateway: int, upstream: Upstream, tokens: AccessTokens
) -> None:
    secret = tokens.create_token(
        name="svc", workspace="acme", repository="api", scopes=["pipeline"]
    ).secret
    spoof = {"X-Original-Method": "GET", "X-Original-URI": "/svc/acme/api/builds"}
    spoof_forwarded = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/svc/acme/api/builds"}
    cases: list[tuple[str, str, dict[str, str], int]] = [
        ("GET", "/svc/acme/api/builds?r=1", {}, 401),
        ("GET", "/svc/acme/api/builds?r=2", bearer("bbat_not_a_token"), 401),
        ("GET", "/svc/acme/lib/builds?r=3", bearer(secret), 403),
        ("POST", "/svc/acme/api/builds?r=4", bearer(secret), 403),
        ("GET", "/svc/acme/api/logs?r=5", bearer(secret), 403),
        ("GET", "/svc/acme/lib/../api/builds?r=6", bearer(secret), 403),
        ("GET", "/svc/acme/api%2Fx/builds?r=7", bearer(secret), 403),
        ("GET", "/svc/hobby/notes/builds?r=8", {**bearer(secret), **spoof}, 403),
        ("GET", "/svc/hobby/notes/builds?r=9", {**bearer(secret), **spoof_forwarded}, 403),
    ]
    for method, path, headers, status in cases:
        response = send(gateway, method, path, headers)
        assert response.status == status, (method, path, response.status)
        if status == 401:
            assert response.getheader("WWW-Authenticate", "").startswith('Bearer realm="api"')
    reached = [s.path for s in upstream.seen if "?r=" in s.path]
    assert reached == []


def test_nothing_is_accepted_after_revoke_returns(
    gateway: int, upstream: Upstream, tokens: AccessTokens
) -> None:
    accepted_after = 0
    for round_ in range(REVOCATIONS):
        new = tokens.create_token(
            name=f"r{round_}", workspace="acme", repository="api", scopes=["pipeline"]
        )
        before = f"/svc/acme/api/builds?g={gateway}&before={round_}"
        assert send(gateway, "GET", before, bearer(new.secret)).status == 200
        tokens.revoke_token(new.token.id)
        for attempt in range(2):
            after = f"/svc/acme/api/builds?g={gateway}&after={round_}.{attempt}"
            response = send(gateway, "GET", after, bearer(new.secret))
            accepted_after += response.status != 401 or arrivals(upstream, after) != 0
    assert accepted_after == 0
