"""The admin pages' owner controls: the allow list on the create form, recent
clients and expiring tokens in the lists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from helpers import bearer
from test_admin import admin_app  # noqa: F401  (fixtures)
from test_admin import admin_parts  # noqa: F401
from test_admin import alice  # noqa: F401
from test_admin import create
from test_admin import REPO
from test_admin import tokens  # noqa: F401

from flask_accesstokens import AccessTokens
from flask_accesstokens.models import utcnow


def test_create_form_takes_an_allow_list(alice: Any, tokens: AccessTokens) -> None:  # noqa: F811
    response = create(alice, allowed_ips="203.0.113.0/24\r\n2001:DB8::/32, 198.51.100.7")
    assert response.status_code == 200
    [token] = tokens.list_tokens("acme", repository="api")
    assert token.allowed_networks == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    listing = alice.get(REPO).text
    assert "Only from 203.0.113.0/24, 2001:db8::/32, 198.51.100.7/32" in listing


def test_bad_allow_list_is_shown_and_nothing_made(alice: Any, tokens: AccessTokens) -> None:  # noqa: F811
    response = create(alice, allowed_ips="10.0.0.1/8")
    assert response.status_code == 400
    assert 'id="allowed_ips-error"' in response.text
    assert "host bits set" in response.text
    assert "10.0.0.1/8" in response.text  # kept in the form
    assert tokens.list_tokens("acme", repository="api") == []


def test_list_shows_recent_clients_and_expiring_soon(
    alice: Any,  # noqa: F811
    admin_app: Flask,  # noqa: F811
    tokens: AccessTokens,  # noqa: F811
) -> None:
    soon = tokens.create_token(
        name="soon", workspace="acme", repository="api", scopes=["repository"],
        expires_at=utcnow() + timedelta(days=3),
    )  # fmt: skip
    later = tokens.create_token(
        name="later", workspace="acme", repository="api", scopes=["repository"],
        expires_at=utcnow() + timedelta(days=300),
    )  # fmt: skip
    user = admin_app.test_client()
    r = user.get(
        "/repositories/acme/api",
        headers=bearer(soon.secret),
        environ_base={"REMOTE_ADDR": "2001:db8::7", "HTTP_USER_AGENT": "git/2.45"},
    )
    assert r.status_code == 200
    page = alice.get(REPO).text
    soon_row = page.split(f'id="token-{soon.token.id}"')[1].split("</tr>")[0]
    later_row = page.split(f'id="token-{later.token.id}"')[1].split("</tr>")[0]
    assert "Expires soon" in soon_row and "Expires soon" not in later_row
    assert "Recent clients (1)" in soon_row
    assert "<code>2001:db8::7</code>" in soon_row and "git/2.45" in soon_row
    assert "Recent clients" not in later_row
