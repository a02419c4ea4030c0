"""Managing tokens as a signed-in admin, through the extension's API and admin
pages mounted in the app, with the app's loaders deciding who and what."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]
Login = Callable[[str], None]

REPO_TOKENS = "/2.0/repositories/acme/api/access-tokens"


def test_admin_creates_uses_and_revokes_a_token(
    host_client: FlaskClient, login: Login, bearer: Headers
) -> None:
    login("alice")
    created = host_client.post(REPO_TOKENS, json={"name": "CI", "scopes": ["repository"]})
    assert created.status_code == 201, created.text
    body = created.get_json()
    assert body["created_by"] == "alice"
    assert body["type"] == "repository"
    secret, token_id = body["token"], body["id"]

    listing = host_client.get(REPO_TOKENS).get_json()
    assert [t["id"] for t in listing["values"]] == [token_id]
    assert "token" not in listing["values"][0]

    api = host_client.application.test_client()  # a machine: no session cookie
    assert api.get("/2.0/repositories/acme/api", headers=bearer(secret)).status_code == 200
    assert host_client.delete(f"{REPO_TOKENS}/{token_id}").status_code == 204
    assert api.get("/2.0/repositories/acme/api", headers=bearer(secret)).status_code == 401


def test_members_cannot_manage(host_client: FlaskClient, login: Login) -> None:
    login("bob")
    response = host_client.post(REPO_TOKENS, json={"name": "CI", "scopes": ["repository"]})
    assert response.status_code == 403
    assert host_client.get(REPO_TOKENS).status_code == 403


def test_signed_out_cannot_manage(host_client: FlaskClient) -> None:
    assert host_client.get(REPO_TOKENS).status_code == 403


def test_unknown_resources_cannot_be_managed(host_client: FlaskClient, login: Login) -> None:
    login("alice")
    response = host_client.get("/2.0/repositories/acme/nope/access-tokens")
    assert response.status_code == 403
    assert host_client.get("/2.0/workspaces/acme/projects/NOPE/access-tokens").status_code == 403


def test_tokens_cannot_manage_tokens(
    host_client: FlaskClient, login: Login, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository:admin", "project:admin", "account")
    login("alice")  # even alongside an admin's session
    response = host_client.post(
        REPO_TOKENS, json={"name": "more", "scopes": ["repository"]}, headers=bearer(secret)
    )
    assert response.status_code == 403
    assert host_client.get(REPO_TOKENS, headers=bearer(secret)).status_code == 403


@pytest.mark.parametrize(
    ("path", "scopes", "status"),
    [
        ("/2.0/workspaces/acme/projects/API/access-tokens", ["project"], 201),
        ("/2.0/workspaces/acme/access-tokens", ["account"], 201),
        ("/2.0/repositories/hobby/notes/access-tokens", ["repository"], 201),
        ("/2.0/workspaces/hobby/projects/HOB/access-tokens", ["project"], 403),
        ("/2.0/workspaces/hobby/access-tokens", ["account"], 403),
    ],
)
def test_project_and_workspace_tokens_need_premium(
    host_client: FlaskClient, login: Login, path: str, scopes: list[str], status: int
) -> None:
    login("alice")
    response = host_client.post(path, json={"name": "bot", "scopes": scopes})
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "path",
    [
        "/admin/repositories/acme/api/access-tokens",
        "/admin/workspaces/acme/projects/API/access-tokens",
        "/admin/workspaces/acme/access-tokens",
    ],
)
def test_admin_pages_can_be_embedded(host_client: FlaskClient, login: Login, path: str) -> None:
    login("alice")
    response = host_client.get(path)
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    login("bob")
    assert host_client.get(path).status_code == 403
