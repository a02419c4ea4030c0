"""The browsable pages and the settings pages, for admins, members and strangers."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]
Login = Callable[[str], None]

PAGES = ["/", "/acme/", "/acme/workspace/projects/API", "/acme/api"]
SETTINGS = {
    "/acme/api/admin": "/admin/repositories/acme/api/access-tokens",
    "/acme/workspace/projects/API/settings": "/admin/workspaces/acme/projects/API/access-tokens",
    "/acme/workspace/settings": "/admin/workspaces/acme/access-tokens",
    "/hobby/notes/admin": "/admin/repositories/hobby/notes/access-tokens",
}


@pytest.mark.parametrize("path", PAGES + list(SETTINGS))
def test_signed_out_goes_to_login(host_client: FlaskClient, path: str) -> None:
    response = host_client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("user", ["alice", "bob"])
def test_members_see_pages(host_client: FlaskClient, login: Login, path: str, user: str) -> None:
    login(user)
    assert host_client.get(path).status_code == 200


def test_repository_page(host_client: FlaskClient, login: Login) -> None:
    login("alice")
    page = host_client.get("/acme/api").text
    assert "git clone http://x-token-auth:&lt;token&gt;@localhost/acme/api.git" in page
    assert "/acme/api/admin" in page


def test_members_get_no_settings_links(host_client: FlaskClient, login: Login) -> None:
    login("bob")
    assert "/acme/api/admin" not in host_client.get("/acme/api").text
    assert "/acme/workspace/settings" not in host_client.get("/acme/").text


@pytest.mark.parametrize(
    "path", ["/hobby/", "/hobby/notes", "/hobby/workspace/projects/HOB", "/ghost/", "/acme/nope"]
)
def test_strangers_get_404(host_client: FlaskClient, login: Login, path: str) -> None:
    login("bob")
    assert host_client.get(path).status_code == 404


def test_missing_project_page_is_404(host_client: FlaskClient, login: Login) -> None:
    login("alice")
    assert host_client.get("/acme/workspace/projects/NOPE").status_code == 404


@pytest.mark.parametrize(("path", "tokens_url"), SETTINGS.items())
def test_admin_settings_lead_to_the_token_pages_in_the_app_layout(
    host_client: FlaskClient, login: Login, path: str, tokens_url: str
) -> None:
    login("alice")
    response = host_client.get(path)
    assert response.status_code == 200
    assert f'href="{tokens_url}"' in response.text
    assert "<iframe" not in response.text

    tokens_page = host_client.get(tokens_url)
    assert tokens_page.status_code == 200
    page = tokens_page.text
    # The app's own header and sign-out form, the extension's page inside it,
    # one heading, and the way back to the settings page.
    assert "Example code host</strong>" in page
    assert "Sign out" in page
    assert page.count("<h1") == 1
    assert "<h1>Access tokens</h1>" in page
    assert f'href="{path}"' in page
    assert 'name="viewport"' in page
    assert "accesstokens.css" in page


def test_token_pages_use_the_one_csrf_mechanism(
    host_client: FlaskClient, login: Login, csrf: Callable[[], str]
) -> None:
    """The extension's forms inside the app's layout post with the same Flask-WTF token."""
    login("alice")
    new = "/admin/repositories/acme/api/access-tokens/new"
    form = host_client.get(new).text
    form_id = re.search(r'name="form_id" value="([^"]+)"', form)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert form_id is not None and token is not None
    data = {"name": "from the page", "scopes": "repository", "form_id": form_id.group(1)}
    refused = host_client.post(new, data=data)
    assert refused.status_code == 400
    created = host_client.post(new, data={**data, "csrf_token": token.group(1)})
    assert created.status_code == 200, created.text
    assert "bbat_" in created.text
    assert "I have copied the token" in created.text


@pytest.mark.parametrize("path", [p for p in SETTINGS if p.startswith("/acme")])
def test_members_cannot_open_settings(host_client: FlaskClient, login: Login, path: str) -> None:
    login("bob")
    assert host_client.get(path).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/hobby/notes/admin",
        "/hobby/workspace/settings",
        "/acme/nope/admin",
        "/acme/workspace/projects/NOPE/settings",
    ],
)
def test_settings_of_unknown_or_foreign_resources_are_404(
    host_client: FlaskClient, login: Login, path: str
) -> None:
    login("bob" if path.startswith("/hobby") else "alice")
    assert host_client.get(path).status_code == 404


def test_delete_repository_from_settings(
    host_client: FlaskClient,
    login: Login,
    csrf: Callable[[], str],
    mint: Mint,
    bearer: Headers,
) -> None:
    secret = mint("repository", repository="api")
    login("alice")
    assert host_client.post("/acme/api/admin/delete").status_code == 400  # no CSRF token
    response = host_client.post("/acme/api/admin/delete", data={"csrf_token": csrf()})
    assert response.status_code == 302
    assert response.headers["Location"] == "/acme/"
    assert "Deleted acme/api" in host_client.get("/acme/").text
    assert host_client.get("/acme/api").status_code == 404
    assert host_client.get("/2.0/repositories/acme/api", headers=bearer(secret)).status_code == 401


def test_delete_project_from_settings(
    host_client: FlaskClient,
    login: Login,
    csrf: Callable[[], str],
    mint: Mint,
    bearer: Headers,
) -> None:
    project_token = mint("project", project="API", name="p")
    repo_token = mint("repository", repository="api", name="r")
    login("alice")
    path = "/acme/workspace/projects/API/settings/delete"
    response = host_client.post(path, data={"csrf_token": csrf()})
    assert response.status_code == 302
    assert host_client.get("/acme/workspace/projects/API").status_code == 404
    project = host_client.get("/2.0/workspaces/acme/projects/API", headers=bearer(project_token))
    assert project.status_code == 401
    repo = host_client.get("/2.0/repositories/acme/api", headers=bearer(repo_token))
    assert repo.status_code == 401


def test_delete_workspace_from_settings(
    host_client: FlaskClient,
    login: Login,
    csrf: Callable[[], str],
    mint: Mint,
    bearer: Headers,
) -> None:
    secrets = [
        mint("account", name="w"),
        mint("project", project="WEB", name="p"),
        mint("repository", repository="lib", name="r"),
    ]
    survivor = mint("repository", workspace="hobby", repository="notes", name="hobby")
    login("alice")
    response = host_client.post("/acme/workspace/settings/delete", data={"csrf_token": csrf()})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert host_client.get("/acme/").status_code == 404
    for secret, path in zip(
        secrets,
        [
            "/2.0/workspaces/acme/members",
            "/2.0/workspaces/acme/projects/WEB",
            "/2.0/repositories/acme/lib",
        ],
        strict=True,
    ):
        assert host_client.get(path, headers=bearer(secret)).status_code == 401
    notes = host_client.get("/2.0/repositories/hobby/notes", headers=bearer(survivor))
    assert notes.status_code == 200


def test_members_cannot_delete(
    host_client: FlaskClient, login: Login, csrf: Callable[[], str]
) -> None:
    login("bob")
    for path in [
        "/acme/api/admin/delete",
        "/acme/workspace/projects/API/settings/delete",
        "/acme/workspace/settings/delete",
    ]:
        assert host_client.post(path, data={"csrf_token": csrf()}).status_code == 403
    login("alice")
    assert host_client.get("/acme/api").status_code == 200


def test_pull_request_page_shows_the_token_as_author(
    host_client: FlaskClient, login: Login, mint: Mint, bearer: Headers
) -> None:
    created = host_client.post(
        "/2.0/repositories/acme/api/pullrequests",
        json={"title": "Bump deps", "source": {"branch": {"name": "deps"}}},
        headers=bearer(mint("pullrequest:write", repository="api", name="Renovate")),
    )
    html_url = created.get_json()["links"]["html"]["href"]
    assert html_url == "http://localhost/acme/api/pull-requests/1"
    login("bob")
    page = host_client.get(html_url)
    assert page.status_code == 200
    assert "Renovate (access token) wants to merge" in page.text
    assert "#1 Bump deps" in host_client.get("/acme/api").text
    assert host_client.get("/acme/api/pull-requests/2").status_code == 404
    assert host_client.get("/acme/nope/pull-requests/1").status_code == 404
