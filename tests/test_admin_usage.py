"""The admin pages' least privilege: the usage page reached from the token
list, its narrowing rotation, and the create form's "what this scope opens"."""

from __future__ import annotations

from typing import Any

from flask import Flask
from helpers import bearer
from test_admin import admin_app  # noqa: F401  (fixtures)
from test_admin import admin_parts  # noqa: F401
from test_admin import alice  # noqa: F401
from test_admin import csrf_of
from test_admin import form_id_of
from test_admin import REPO
from test_admin import secret_of
from test_admin import tokens  # noqa: F401

from flask_accesstokens import AccessTokens


def test_usage_page_is_linked_and_says_what_was_never_needed(
    alice: Any,  # noqa: F811
    admin_app: Flask,  # noqa: F811
    tokens: AccessTokens,  # noqa: F811
) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository:write", "webhook"]
    )
    listing = alice.get(REPO)
    url = f"{REPO}/{new.token.id}/usage"
    assert f'href="{url}"' in listing.text
    page = alice.get(url)
    assert page.status_code == 200
    assert "Never needed: Repositories: Write, Webhooks: Read and write" in page.text
    # Nothing used yet: nothing to narrow to.
    assert "Rotate with only the scopes it used" not in page.text

    user = admin_app.test_client()
    assert user.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 200
    page = alice.get(url)
    assert "Never needed: Webhooks: Read and write" in page.text
    assert "acme/api" in page.text
    assert "Rotate with only the scopes it used" in page.text
    data = {
        "csrf_token": csrf_of(page.text),
        "form_id": form_id_of(page.text),
        "scopes": ["repository:write"],
    }
    rotated = alice.post(f"{REPO}/{new.token.id}/rotate", data=data)
    assert rotated.status_code == 200
    secret = secret_of(rotated.text)
    assert secret
    record = tokens.get_token(new.token.id)
    assert record is not None and tuple(record.scopes) == ("repository:write",)
    assert user.get("/repositories/acme/api/either", headers=bearer(secret)).status_code == 403
    assert user.post("/repositories/acme/api/push", headers=bearer(secret)).status_code == 200
    # Not someone else's, and not without signing in.
    assert admin_app.test_client().get(url).status_code in (302, 403)
    assert (
        alice.get(f"/settings/repositories/acme/lib/access-tokens/{new.token.id}/usage").status_code
        == 404
    )


def test_the_rotate_form_cannot_widen(
    alice: Any,  # noqa: F811
    tokens: AccessTokens,  # noqa: F811
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    confirm = alice.get(f"{REPO}/{new.token.id}/rotate")
    data = {
        "csrf_token": csrf_of(confirm.text),
        "form_id": form_id_of(confirm.text),
        "scopes": ["repository:admin"],
    }
    refused = alice.post(f"{REPO}/{new.token.id}/rotate", data=data)
    assert refused.status_code == 400
    assert "only narrow" in refused.text
    record = tokens.get_token(new.token.id)
    assert record is not None and tuple(record.scopes) == ("repository",) and record.generation == 0


def test_the_create_form_shows_what_each_scope_opens(alice: Any) -> None:  # noqa: F811
    form = alice.get(f"{REPO}/new").text
    assert "<code>POST /repositories/&lt;workspace&gt;/&lt;repo_slug&gt;/push</code>" in form
    assert (
        "<code>POST /repositories/&lt;workspace&gt;/&lt;repo_slug&gt;/pullrequests"
        " (with pipeline)</code>" in form
    )
