"""Signing in with a password, and access tokens never signing in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]
Csrf = Callable[[], str]


def test_login_page(host_client: FlaskClient) -> None:
    response = host_client.get("/login")
    assert response.status_code == 200
    assert 'name="password"' in response.text


def test_login_and_logout(host_client: FlaskClient, csrf: Csrf) -> None:
    host_client.get("/login")
    response = host_client.post(
        "/login?next=/acme/",
        data={
            "username": "alice",
            "password": "demo",
            "csrf_token": csrf(),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/acme/"
    assert "Acme Corp" in host_client.get("/").text

    response = host_client.post("/logout", data={"csrf_token": csrf()})
    assert response.status_code == 302
    assert host_client.get("/").status_code == 302


def test_wrong_password(host_client: FlaskClient, csrf: Csrf) -> None:
    host_client.get("/login")
    response = host_client.post(
        "/login",
        data={
            "username": "alice",
            "password": "nope",
            "csrf_token": csrf(),
        },
    )
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    with host_client.session_transaction() as session:
        assert "user_id" not in session


def test_unknown_user(host_client: FlaskClient, csrf: Csrf) -> None:
    host_client.get("/login")
    response = host_client.post(
        "/login",
        data={
            "username": "mallory",
            "password": "demo",
            "csrf_token": csrf(),
        },
    )
    assert response.status_code == 401


def test_login_needs_the_form_csrf_token(host_client: FlaskClient) -> None:
    host_client.get("/login")
    response = host_client.post("/login", data={"username": "alice", "password": "demo"})
    assert response.status_code == 400
    with host_client.session_transaction() as session:
        assert "user_id" not in session


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_no_open_redirect_after_login(host_client: FlaskClient, csrf: Csrf, target: str) -> None:
    host_client.get("/login")
    response = host_client.post(
        "/login",
        query_string={"next": target},
        data={
            "username": "alice",
            "password": "demo",
            "csrf_token": csrf(),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_access_token_cannot_sign_in(
    host_client: FlaskClient,
    mint: Mint,
    bearer: Headers,
    basic: Headers,
    scheme: str,
    method: str,
) -> None:
    secret = mint("repository", "repository:admin", project="API")
    headers = bearer(secret) if scheme == "bearer" else basic(secret)
    response = host_client.open(
        "/login",
        method=method,
        headers=headers,
        data={"username": "alice", "password": "demo"},
    )
    assert response.status_code == 403
    assert "Access tokens cannot sign in" in response.text
    assert "Set-Cookie" not in response.headers
    with host_client.session_transaction() as session:
        assert "user_id" not in session


def test_token_as_password_does_not_sign_in(
    host_client: FlaskClient, csrf: Csrf, mint: Mint
) -> None:
    secret = mint("repository", repository="api")
    host_client.get("/login")
    for username in ("x-token-auth", "alice"):
        response = host_client.post(
            "/login",
            data={
                "username": username,
                "password": secret,
                "csrf_token": csrf(),
            },
        )
        assert response.status_code == 401
    with host_client.session_transaction() as session:
        assert "user_id" not in session


def test_token_does_not_open_pages(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    secret = mint("repository:admin", "account", "project:admin")
    for path in ["/", "/acme/", "/acme/api/admin", "/acme/workspace/settings"]:
        response = host_client.get(path, headers=bearer(secret))
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
        assert "Set-Cookie" not in response.headers
