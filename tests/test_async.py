"""Async views and callbacks under the decorators (needs ``flask[async]``)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_any_scope
from flask_accesstokens import require_scope

pytest.importorskip("asgiref", reason="async views need flask[async]: pip install 'flask[async]'")


@pytest.fixture
def async_app(app: Flask) -> Flask:
    @app.get("/async/<workspace>/<repo_slug>")
    @require_scope("repository")
    async def read(workspace: str, repo_slug: str) -> Any:
        await asyncio.sleep(0)
        return jsonify(name=current_token.name, repo=repo_slug)

    @app.post("/async/<workspace>/<repo_slug>")
    @require_any_scope("webhook", "repository:write")
    async def write(workspace: str, repo_slug: str) -> Any:
        await asyncio.sleep(0)
        return jsonify(id=current_token.id)

    @app.get("/async-optional/<workspace>/<repo_slug>")
    @require_scope("repository", optional=True)
    async def maybe(workspace: str, repo_slug: str) -> Any:
        return jsonify(token=current_token.id if current_token else None)

    return app


def test_async_view_runs_with_a_valid_token(async_app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    client = async_app.test_client()
    response = client.get("/async/acme/api", headers=bearer(new.secret))
    assert response.status_code == 200
    assert response.get_json() == {"name": "CI", "repo": "api"}


def test_async_view_is_protected(async_app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    client = async_app.test_client()
    assert client.get("/async/acme/api").status_code == 401
    assert client.get("/async/acme/api", headers=bearer("garbage")).status_code == 401
    assert client.get("/async/acme/lib", headers=bearer(new.secret)).status_code == 403
    response = client.post("/async/acme/api", headers=bearer(new.secret))
    assert response.status_code == 403
    assert 'scope="webhook repository:write"' in response.headers["WWW-Authenticate"]


def test_async_view_with_any_scope(async_app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["pullrequest:write"]
    )
    token_id = new.token.id
    response = async_app.test_client().post("/async/acme/api", headers=bearer(new.secret))
    assert response.status_code == 200
    assert response.get_json() == {"id": token_id}


def test_async_optional_view(async_app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    token_id = new.token.id
    client = async_app.test_client()
    assert client.get("/async-optional/acme/api").get_json() == {"token": None}
    response = client.get("/async-optional/acme/api", headers=bearer(new.secret))
    assert response.get_json() == {"token": token_id}


def test_async_project_loader(async_app: Flask, tokens: AccessTokens) -> None:
    @tokens.project_loader
    async def project_of(workspace: str, repository: str) -> str | None:
        await asyncio.sleep(0)
        return {"api": "API", "web": "WEB"}.get(repository)

    new = tokens.create_token(name="P", workspace="acme", project="API", scopes=["project"])
    client = async_app.test_client()
    assert client.get("/async/acme/api", headers=bearer(new.secret)).status_code == 200
    assert client.get("/async/acme/web", headers=bearer(new.secret)).status_code == 403
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 200


def test_an_async_view_without_asgiref_fails_when_decorated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the ``async`` extra Flask cannot run the view: say so at
    decoration, not as a 500 to the first valid token."""
    monkeypatch.setitem(sys.modules, "asgiref", None)
    monkeypatch.setitem(sys.modules, "asgiref.sync", None)

    async def commits(workspace: str, repo_slug: str) -> Any:
        return {}

    with pytest.raises(RuntimeError, match=r"commits is an async view: install the 'async' extra"):
        require_scope("repository")(commits)

    def sync(workspace: str, repo_slug: str) -> Any:
        return {}

    assert require_scope("repository")(sync).__wrapped__ is sync  # type: ignore[attr-defined]
