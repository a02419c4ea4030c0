"""Deleting a trust policy revokes the tokens it minted in every worker:
gunicorn with four workers on PostgreSQL, each having served the minted
token, all refusing it once ``delete_trust_policy`` returns."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from oidc_issuer import Issuer as LocalIssuer
from oidc_issuer import running_issuer
from services import fresh_schema
from services import needs_postgresql
from services import require_postgresql
from test_multiworker import gunicorn
from test_oidc_exchange import EXCHANGE
from test_oidc_exchange import GITHUB_CLAIMS
from test_oidc_exchange import oidc_app

from flask_accesstokens import AccessTokens

pytestmark = needs_postgresql
REPO = "/repositories/acme/api"


@pytest.fixture
def host() -> Iterator[tuple[str, Flask, AccessTokens, LocalIssuer]]:
    with running_issuer() as issuer, fresh_schema(require_postgresql()) as url:
        app, db, tokens = oidc_app(url, issuer)
        with app.app_context():
            yield url, app, tokens, issuer
            AccessTokens.dispose_connections()
            db.session.remove()
            db.engine.dispose()


def get(port: int, secret: str) -> int:
    # A new connection each time, so gunicorn spreads them over its workers.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", REPO, headers={"Authorization": f"Bearer {secret}"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_deleting_a_policy_revokes_its_tokens_in_every_worker(
    host: tuple[str, Flask, AccessTokens, LocalIssuer], tmp_path: Path
) -> None:
    url, app, tokens, issuer = host
    policy = tokens.create_trust_policy(
        resource={"workspace": "acme", "repository": "api"},
        issuer="github",
        claims=GITHUB_CLAIMS,
        scopes=["repository"],
    )
    client: Any = app.test_client()
    minted = client.post(EXCHANGE, json={"token": issuer.sign(issuer.github())})
    assert minted.status_code == 201
    secret = minted.json["token"]
    other = tokens.create_token(
        name="other", workspace="acme", repository="api", scopes=["repository"]
    ).secret

    with gunicorn(url, tmp_path / "gunicorn.log") as port:
        # Every worker has seen the token work (and may cache it).
        assert [get(port, secret) for _ in range(40)] == [200] * 40
        assert tokens.delete_trust_policy(policy.id, deleted_by="alice")
        assert [get(port, secret) for _ in range(40)] == [401] * 40
        assert [get(port, other) for _ in range(8)] == [200] * 8
