"""``/access-tokens/self``: a token reads and retires itself."""

from __future__ import annotations

from typing import Any

from flask_sqlalchemy import SQLAlchemy
from helpers import basic
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource

SELF = "/api/access-tokens/self"


def test_get_shows_the_token_and_what_it_holds(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["pullrequest:write"]
    )
    r = client.get(SELF, headers=bearer(new.secret))
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == new.token.id
    assert body["scopes"] == ["pullrequest:write"]
    assert body["granted"] == sorted(
        ["pullrequest:write", "pullrequest", "repository:write", "repository"]
    )
    assert body["type"] == "repository" and body["repository"] == "api"
    assert body["expires_at"] is None
    assert new.secret not in r.get_data(as_text=True)
    assert "token" not in body
    assert r.headers["X-OAuth-Scopes"] == "pullrequest:write"
    assert r.headers["X-Credential-Type"] == "repo_access_token"
    assert "X-Accepted-OAuth-Scopes" not in r.headers
    assert r.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in r.headers


def test_any_token_type_and_basic_credentials(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="ws", workspace="hobby", scopes=["account"])
    r = client.get(SELF, headers=basic(new.secret))
    assert r.status_code == 200
    assert r.get_json()["type"] == "workspace"
    assert r.headers["X-Credential-Type"] == "workspace_access_token"


def test_without_a_valid_token_401_as_a_protected_route(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    for method in ("get", "delete"):
        bare = getattr(client, method)(SELF)
        protected = client.get("/repositories/acme/api")
        assert bare.status_code == 401
        assert bare.get_json() == protected.get_json()
        assert bare.headers["WWW-Authenticate"] == protected.headers["WWW-Authenticate"]
        bad = getattr(client, method)(SELF, headers=bearer(new.secret[:-2] + "zz"))
        protected = client.get("/repositories/acme/api", headers=bearer(new.secret[:-2] + "zz"))
        assert bad.status_code == 401
        assert bad.get_json() == protected.get_json()
        assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
        assert "X-OAuth-Scopes" not in bad.headers


def test_delete_retires_it_at_once(client: Any, tokens: AccessTokens, db: SQLAlchemy) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 200
    r = client.delete(SELF, headers=bearer(new.secret))
    assert r.status_code == 204 and r.data == b""
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 401
    assert client.get(SELF, headers=bearer(new.secret)).status_code == 401
    assert client.delete(SELF, headers=bearer(new.secret)).status_code == 401
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.revoked_at is not None
    assert record.revoked_by == "CI (access token)"


def test_other_management_routes_still_refuse_tokens(client: Any, tokens: AccessTokens) -> None:
    @tokens.manager_loader
    def everyone(resource: Resource) -> str:
        return "alice"

    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    base = "/api/repositories/acme/api/access-tokens"
    for method, url in (
        ("get", base),
        ("get", f"{base}/{new.token.id}"),
        ("delete", f"{base}/{new.token.id}"),
        ("post", f"{base}/{new.token.id}/rotate"),
    ):
        assert getattr(client, method)(url, headers=bearer(new.secret)).status_code == 403
    assert client.get(SELF, headers=bearer(new.secret)).status_code == 200


def test_self_records_use(client: Any, tokens: AccessTokens, db: SQLAlchemy) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    client.get(SELF, headers=bearer(new.secret), environ_base={"REMOTE_ADDR": "198.51.100.9"})
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.last_used_at is not None
    assert [c["ip"] for c in record.recent_clients] == ["198.51.100.9"]
