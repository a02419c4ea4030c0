"""What a new user meets first in the example app: the favicon, phone-ready
pages, one CSRF mechanism, and the JSON APIs' own rule instead of it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

Login = Callable[[str], None]
Csrf = Callable[[], str]

PAGES = [
    "/",
    "/acme/",
    "/acme/workspace/projects/API",
    "/acme/api",
    "/acme/api/admin",
    "/acme/workspace/settings",
    "/admin/repositories/acme/api/access-tokens",
    "/admin/workspaces/acme/access-tokens/all",
]


@pytest.mark.parametrize("signed_in", [False, True])
def test_favicon_is_answered_without_a_redirect(
    host_client: FlaskClient, login: Login, signed_in: bool
) -> None:
    if signed_in:
        login("alice")
    response = host_client.get("/favicon.ico")
    assert response.status_code == 204
    assert "Location" not in response.headers


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_laid_out_for_phones(host_client: FlaskClient, login: Login, path: str) -> None:
    login("alice")
    page = host_client.get(path).text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert page.count('name="viewport"') == 1
    assert '<link rel="icon" href="data:,">' in page


def test_sign_out_needs_the_form_token(host_client: FlaskClient, login: Login, csrf: Csrf) -> None:
    login("alice")
    assert host_client.post("/logout").status_code == 400
    assert host_client.get("/").status_code == 200  # still signed in
    assert host_client.post("/logout", data={"csrf_token": csrf()}).status_code == 302
    assert host_client.get("/").status_code == 302


def test_a_token_from_another_session_is_refused(
    host_client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    stranger = host_client.application.test_client()
    stranger_token = stranger.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    login("alice")
    response = host_client.post("/acme/api/admin/delete", data={"csrf_token": stranger_token})
    assert response.status_code == 400
    assert host_client.get("/acme/api").status_code == 200


@pytest.mark.parametrize(
    "path", ["/2.0/repositories/acme/api/access-tokens", "/2.0/workspaces/acme/access-tokens"]
)
def test_management_api_keeps_its_own_rule(
    host_client: FlaskClient, login: Login, path: str
) -> None:
    """Exempt from CSRFProtect, the JSON API still refuses what a cross-site
    form could send, and takes JSON from a signed-in admin without a form token."""
    login("alice")
    form = host_client.post(path, data={"name": "via a form", "scopes": "repository"})
    assert form.status_code == 415
    plain = host_client.post(
        path, data='{"name": "x", "scopes": ["repository"]}', content_type="text/plain"
    )
    assert plain.status_code == 415
    created = host_client.post(path, json={"name": "CI", "scopes": ["repository"]})
    assert created.status_code == 201


def test_sign_in_with_a_token_is_refused_before_the_form_is_checked(
    host_client: FlaskClient,
) -> None:
    response = host_client.post(
        "/login",
        headers={"Authorization": "Bearer bbat_anything"},
        data={"username": "alice", "password": "demo"},
    )
    assert response.status_code == 403
    assert "Access tokens cannot sign in" in response.text
