"""Every answer of the admin pages is ``Cache-Control: no-store`` (issue 21,
item 6): lists, the overview and the confirm pages show clients' addresses,
user agents, allow lists and creators; errors, redirects and refusals too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from test_admin import csrf_of
from test_admin import make_admin_app
from test_admin import running

from flask_accesstokens import AccessTokens

REPO = "/settings/repositories/acme/api/access-tokens"
PROJECT = "/settings/workspaces/acme/projects/API/access-tokens"
WORKSPACE = "/settings/workspaces/acme/access-tokens"


@pytest.fixture
def parts(database_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    app, db, tokens = make_admin_app(database_uri)
    with running(app, db):
        yield app, db, tokens


@pytest.fixture
def alice(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> Any:
    client = parts[0].test_client()
    assert client.get("/test-login?user=alice").status_code == 200
    return client


@pytest.fixture
def used(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> str:
    """A token with an allow list, a creator and a recent client to show."""
    app, _, tokens = parts
    new = tokens.create_token(
        name="CI",
        workspace="acme",
        repository="api",
        scopes=["repository"],
        created_by="alice",
        allowed_ips=["10.1.2.0/24"],
    )
    response = app.test_client().get(
        "/repositories/acme/api",
        headers={**bearer(new.secret), "User-Agent": "ci-runner/1.2 (build-host-7)"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.status_code == 200
    return new.token.id


def private(response: Any) -> bool:
    return response.headers.get("Cache-Control") == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        REPO,
        f"{REPO}?page=2",
        f"{REPO}/new",
        PROJECT,
        WORKSPACE,
        f"{WORKSPACE}/all",
        "{REPO}/{id}/revoke",
        "{REPO}/{id}/rotate",
    ],
)
def test_pages_are_not_stored(alice: Any, used: str, path: str) -> None:
    response = alice.get(path.format(REPO=REPO, id=used))
    assert response.status_code == 200
    assert private(response)
    if path == REPO:
        assert "10.1.2.3" in response.text or "10.1.2.0/24" in response.text


def test_form_answers_are_not_stored(alice: Any, used: str) -> None:
    confirm = alice.get(f"{REPO}/{used}/revoke")
    revoked = alice.post(f"{REPO}/{used}/revoke", data={"csrf_token": csrf_of(confirm.text)})
    assert revoked.status_code in (302, 303) and private(revoked)
    form = alice.get(f"{REPO}/new")
    form_id = re.search(r'name="form_id" value="([^"]+)"', form.text)
    assert form_id is not None
    data = {"csrf_token": csrf_of(form.text), "name": "x", "scopes": ["repository"]}
    created = alice.post(f"{REPO}/new", data={**data, "form_id": form_id.group(1)})
    assert created.status_code == 200 and private(created)  # the reveal page
    again = alice.post(f"{REPO}/new", data={**data, "form_id": form_id.group(1)})
    assert again.status_code == 303 and private(again)  # resubmitted: to the list
    listed = alice.get(again.headers["Location"])
    assert listed.status_code == 200 and private(listed)


@pytest.mark.parametrize(
    ("who", "method", "path", "status"),
    [
        ("anonymous", "get", REPO, 403),
        ("bob", "get", f"{WORKSPACE}/all", 403),
        ("alice", "get", f"{REPO}/{'0' * 32}/revoke", 404),
        ("alice", "post", f"{REPO}/{'0' * 32}/revoke", 400),
        ("alice", "delete", REPO, 405),
        ("alice", "get", f"{REPO}?page=%FF", 200),
    ],
)
def test_errors_and_refusals_are_not_stored(
    parts: tuple[Flask, SQLAlchemy, AccessTokens], who: str, method: str, path: str, status: int
) -> None:
    client = parts[0].test_client()
    if who != "anonymous":
        client.get(f"/test-login?user={who}")
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert private(response)


def test_a_bad_query_string_and_a_token_are_not_stored(alice: Any, used: str) -> None:
    raw = alice.get(REPO, environ_overrides={"QUERY_STRING": "page=\xff"})
    assert raw.status_code == 400 and private(raw)
    refused = alice.get(REPO, headers=bearer("bbat_garbage"))
    assert refused.status_code == 403 and private(refused)


def test_the_stylesheet_stays_cacheable(alice: Any) -> None:
    page = alice.get(REPO).text
    href = page.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    response = alice.get(href)
    response.close()
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
