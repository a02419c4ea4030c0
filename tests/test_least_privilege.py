"""Least privilege from observed use: what is recorded per request (and how
few writes it costs), the usage answer and its recommendation, and the
narrowing rotation. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import token_overprivileged
from flask_accesstokens import TokenEvent
from flask_accesstokens.models import AccessToken
from flask_accesstokens.models import utcnow
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.usage import FIRST_USES_PER_MINUTE
from flask_accesstokens.usagemodels import MAX_RESOURCES_PER_TOKEN
from flask_accesstokens.usagemodels import ResourceUse
from flask_accesstokens.usagemodels import ScopeUse

REPO = "/repositories/acme/api"


@contextmanager
def count_writes(db: SQLAlchemy) -> Iterator[list[str]]:
    """Every statement that writes, as the database sees it (executemany
    counted once per row)."""
    seen: list[str] = []

    def listen(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            seen.extend([statement] * (len(params) if many else 1))

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)


def _scope_rows(db: SQLAlchemy, token_id: str) -> dict[str, Any]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ScopeUse.scope, ScopeUse.last_needed).where(ScopeUse.token_id == token_id)
        )
        return dict(rows.all())


def _resource_rows(db: SQLAlchemy, token_id: str) -> list[str]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(ResourceUse.resource).where(ResourceUse.token_id == token_id))
        return sorted(r for (r,) in rows)


def _flush(app: Flask, token_id: str) -> None:
    """What the next coalesced write would do, now: as if the window passed."""
    usage = Pipeline.of(app).usage
    use = usage._tokens[token_id]
    use.flush_at = utcnow() - timedelta(seconds=1)
    usage.flush(token_id, use, utcnow())


@pytest.fixture
def broad(tokens: AccessTokens) -> tuple[str, str]:
    new = tokens.create_token(
        name="CI",
        workspace="acme",
        scopes=["repository:write", "webhook", "pipeline", "account"],
        created_by="alice",
    )
    return new.secret, new.token.id


# -- recording ---------------------------------------------------------------------------


def test_served_scopes_and_resources_are_recorded(
    app: Flask, db: SQLAlchemy, client: Any, broad: tuple[str, str]
) -> None:
    secret, token_id = broad
    assert client.get(REPO, headers=bearer(secret)).status_code == 200
    # repository is implied by repository:write: that grant served it.
    assert set(_scope_rows(db, token_id)) == {"repository:write"}
    assert _resource_rows(db, token_id) == ["workspace=acme/repository=api"]
    # any_of: only the required scope the token holds counts.
    assert client.get(f"{REPO}/either", headers=bearer(secret)).status_code == 200
    assert set(_scope_rows(db, token_id)) == {"repository:write", "webhook"}
    assert client.get("/workspaces/acme/members", headers=bearer(secret)).status_code == 200
    assert set(_scope_rows(db, token_id)) == {"repository:write", "webhook", "account"}
    assert "workspace=acme" in _resource_rows(db, token_id)


def test_refused_requests_record_nothing(
    app: Flask, db: SQLAlchemy, client: Any, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="R", workspace="acme", repository="api", scopes=["webhook"])
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 403
    assert (
        client.get("/repositories/acme/lib/either", headers=bearer(new.secret)).status_code == 403
    )
    assert _scope_rows(db, new.token.id) == {}
    assert _resource_rows(db, new.token.id) == []


def test_ten_thousand_requests_cost_a_constant_number_of_writes(database_uri: str) -> None:
    """One token, one last-used window (an hour here, so a slow machine
    stays inside it): a constant number of writes, counted by the database
    driver's statement hook, however many requests."""
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_LAST_USED_RESOLUTION=3600)
    try:
        with app.app_context():
            new = tokens.create_token(name="CI", workspace="acme", scopes=["repository:write"])
            client = app.test_client()
            headers = bearer(new.secret)
            with count_writes(db) as first:
                assert client.get(REPO, headers=headers).status_code == 200
            # Last use, and the first use of a scope and of a resource (each
            # an UPDATE that finds no row, then an INSERT).
            assert 0 < len(first) <= 5
            with count_writes(db) as writes:
                for _ in range(10_000):
                    client.get(REPO, headers=headers)
            assert writes == []
            before = _scope_rows(db, new.token.id)["repository:write"]
            # The window passes: one coalesced write per table.
            with count_writes(db) as flushed:
                _flush(app, new.token.id)
            assert len(flushed) == 2
            assert _scope_rows(db, new.token.id)["repository:write"] > before
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_first_uses_are_written_at_once_within_a_budget(
    app: Flask, db: SQLAlchemy, client: Any, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="W", workspace="acme", scopes=["repository"])
    repos = [f"r{i}" for i in range(FIRST_USES_PER_MINUTE + 3)]
    for repo in repos:
        assert (
            client.get(f"/repositories/acme/{repo}", headers=bearer(new.secret)).status_code == 200
        )
    # The scope and the first resources at once; the rest wait.
    assert set(_scope_rows(db, new.token.id)) == {"repository"}
    assert len(_resource_rows(db, new.token.id)) == FIRST_USES_PER_MINUTE - 1
    _flush(app, new.token.id)
    assert len(_resource_rows(db, new.token.id)) == len(repos)


def test_resources_are_capped_per_token(
    app: Flask, db: SQLAlchemy, client: Any, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="W", workspace="acme", scopes=["repository"])
    for i in range(MAX_RESOURCES_PER_TOKEN + 20):
        client.get(f"/repositories/acme/r{i}", headers=bearer(new.secret))
    _flush(app, new.token.id)
    assert len(_resource_rows(db, new.token.id)) == MAX_RESOURCES_PER_TOKEN
    use = Pipeline.of(app).usage._tokens[new.token.id]
    assert len(use.stored) <= MAX_RESOURCES_PER_TOKEN + 1  # the scope


def test_a_new_worker_stores_what_another_one_stored(
    app: Flask, db: SQLAlchemy, client: Any, broad: tuple[str, str], database_uri: str
) -> None:
    """A second process (here a second app on the same database) writes a
    key it meets once, as an UPDATE of the row the first one inserted."""
    secret, token_id = broad
    client.get(REPO, headers=bearer(secret))
    other, other_db, _ = make_app(database_uri)
    try:
        with other.app_context(), count_writes(other_db) as writes:
            assert other.test_client().get(REPO, headers=bearer(secret)).status_code == 200
        assert not any(w.lstrip().upper().startswith("INSERT") for w in writes)
    finally:
        with other.app_context():
            AccessTokens.dispose_connections()
            other_db.engine.dispose()
    assert set(_scope_rows(db, token_id)) == {"repository:write"}


# -- the usage answer -------------------------------------------------------------------


def test_usage_answer_and_recommendation(
    app: Flask, client: Any, tokens: AccessTokens, broad: tuple[str, str]
) -> None:
    secret, token_id = broad
    usage = tokens.token_usage(token_id)
    assert usage is not None
    record = tokens.get_token(token_id)
    assert record is not None
    assert usage.since == record.created_at
    assert usage.remove_scopes == ("repository:write", "webhook", "pipeline", "account")
    client.get(REPO, headers=bearer(secret))
    client.get(f"{REPO}/either", headers=bearer(secret))
    usage = tokens.token_usage(token_id)
    assert usage is not None
    assert usage.remove_scopes == ("pipeline", "account")
    assert usage.used_scopes == ("repository:write", "webhook")
    body = usage.as_json()
    assert body["recommendation"] == {"remove_scopes": ["pipeline", "account"]}
    assert [s["scope"] for s in body["scopes"]] == list(record.scopes)
    assert body["scopes"][2] == {"scope": "pipeline", "last_needed": None}
    assert body["resources"][0]["resource"] == {"workspace": "acme", "repository": "api"}
    assert tokens.token_usage("nope") is None


def test_removing_the_recommended_scopes_refuses_none(
    app: Flask, client: Any, tokens: AccessTokens, broad: tuple[str, str]
) -> None:
    secret, token_id = broad
    requests = [REPO, f"{REPO}/either", "/repositories/acme/web"]
    assert all(client.get(p, headers=bearer(secret)).status_code == 200 for p in requests)
    usage = tokens.token_usage(token_id)
    assert usage is not None
    new = tokens.rotate_token(token_id, scopes=usage.used_scopes, grace=timedelta(0))
    assert new is not None
    assert all(client.get(p, headers=bearer(new.secret)).status_code == 200 for p in requests)
    assert client.get("/workspaces/acme/members", headers=bearer(new.secret)).status_code == 403


def test_canaries_have_no_usage_and_are_never_reported(
    app: Flask, tokens: AccessTokens, client: Any
) -> None:
    canary = tokens.create_canary(name="decoy", workspace="acme")
    client.get(REPO, headers=bearer(canary.secret))
    usage = tokens.token_usage(canary.token.id)
    assert usage is not None
    assert (usage.scopes, usage.resources, usage.remove_scopes) == ((), (), ())
    later = utcnow() + timedelta(days=400)
    assert [f.token.id for f in tokens.service().unused(timedelta(days=1), later)] == []


def test_older_tokens_are_tracked_from_now(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="old", workspace="acme", scopes=["repository"])
    start = utcnow()
    db.session.execute(
        sa.update(AccessToken)
        .where(AccessToken.id == new.token.id)
        .values(created_at=start - timedelta(days=300), usage_since=start)
    )
    db.session.commit()
    usage = tokens.token_usage(new.token.id)
    assert usage is not None and usage.since == start
    # Unused for 30 days needs 30 days of watching.
    assert tokens.service().unused(timedelta(days=30)) == []
    found = tokens.service().unused(timedelta(days=30), start + timedelta(days=31))
    assert [(f.token.id, f.unused) for f in found] == [(new.token.id, ("repository",))]


def test_unused_for_a_period_and_the_signal_once(
    app: Flask, db: SQLAlchemy, client: Any, tokens: AccessTokens, broad: tuple[str, str]
) -> None:
    secret, token_id = broad
    now = utcnow()
    db.session.execute(
        sa.update(AccessToken)
        .where(AccessToken.id == token_id)
        .values(created_at=now - timedelta(days=20))
    )
    db.session.commit()
    client.get(REPO, headers=bearer(secret))
    found = tokens.service().unused(timedelta(days=5), now + timedelta(seconds=5))
    assert [(f.token.id, f.unused) for f in found] == [
        (token_id, ("webhook", "pipeline", "account"))
    ]
    # Ten days on, the scope that served a request is unused for five days too.
    later = now + timedelta(days=10)
    found = tokens.service().unused(timedelta(days=5), later)
    assert found[0].unused == ("repository:write", "webhook", "pipeline", "account")
    sent: list[tuple[str, list[str]]] = []

    def receive(sender: Any, token: AccessToken, unused: list[str]) -> None:
        sent.append((token.id, unused))

    token_overprivileged.connect(receive)
    try:
        assert tokens.notify_overprivileged(timedelta(days=5), now + timedelta(seconds=5)) == 1
        assert tokens.notify_overprivileged(timedelta(days=5), now + timedelta(seconds=6)) == 0
        # Another set of unused scopes is another notice.
        assert tokens.notify_overprivileged(timedelta(days=5), later) == 1
        assert tokens.notify_overprivileged(timedelta(days=5), later) == 0
    finally:
        token_overprivileged.disconnect(receive)
    assert sent == [
        (token_id, ["webhook", "pipeline", "account"]),
        (token_id, ["repository:write", "webhook", "pipeline", "account"]),
    ]


# -- narrowing rotation -------------------------------------------------------------------


def test_rotation_narrows_both_secrets_at_once(
    app: Flask, db: SQLAlchemy, client: Any, tokens: AccessTokens, broad: tuple[str, str]
) -> None:
    old, token_id = broad
    assert client.get("/workspaces/acme/members", headers=bearer(old)).status_code == 200
    new = tokens.rotate_token(
        token_id, rotated_by="alice", grace=timedelta(minutes=5), scopes=["repository"]
    )
    assert new is not None
    assert new.token.id == token_id
    assert tuple(new.token.scopes) == ("repository",)
    for secret in (old, new.secret):  # the old one still in its grace window
        assert client.get(REPO, headers=bearer(secret)).status_code == 200
        assert client.get("/workspaces/acme/members", headers=bearer(secret)).status_code == 403
        assert client.post(f"{REPO}/push", headers=bearer(secret)).status_code == 403
    record = tokens.get_token(token_id)
    assert record is not None and tuple(record.scopes) == ("repository",)
    event = db.session.scalars(
        sa.select(TokenEvent).where(TokenEvent.action == "rotated").order_by(TokenEvent.id.desc())
    ).first()
    assert event is not None and event.actor == "alice"
    assert event.detail == (
        "grace=300s; scopes: repository:write webhook pipeline account -> repository"
    )


@pytest.mark.parametrize(
    "scopes",
    [["pullrequest"], ["repository:admin"], ["nope"], [], "repository", ["repository", 3]],
)
def test_rotation_never_widens(
    app: Flask, tokens: AccessTokens, broad: tuple[str, str], scopes: Any
) -> None:
    _, token_id = broad
    with pytest.raises(ValueError):
        tokens.rotate_token(token_id, scopes=scopes)
    record = tokens.get_token(token_id)
    assert record is not None and record.generation == 0
    assert tuple(record.scopes) == ("repository:write", "webhook", "pipeline", "account")


def test_rotation_without_scopes_keeps_them(
    app: Flask, tokens: AccessTokens, broad: tuple[str, str]
) -> None:
    _, token_id = broad
    new = tokens.rotate_token(token_id)
    assert new is not None
    assert tuple(new.token.scopes) == ("repository:write", "webhook", "pipeline", "account")


# -- the JSON API ---------------------------------------------------------------------------

API = "/api/repositories/acme/api/access-tokens"
ALICE = {"X-Test-User": "alice"}


@pytest.fixture
def managed(tokens: AccessTokens) -> AccessTokens:
    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return "alice" if request.headers.get("X-Test-User") == "alice" else None

    return tokens


def test_api_usage_and_narrowing_rotation(client: Any, managed: AccessTokens) -> None:
    made = client.post(
        API, json={"name": "CI", "scopes": ["repository:write", "webhook"]}, headers=ALICE
    ).get_json()
    assert client.get(REPO, headers=bearer(made["token"])).status_code == 200
    response = client.get(f"{API}/{made['id']}/usage", headers=ALICE)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["since"] == made["created_at"]
    assert [s["scope"] for s in body["scopes"]] == ["repository:write", "webhook"]
    assert body["scopes"][0]["last_needed"] is not None
    assert body["scopes"][1]["last_needed"] is None
    assert body["resources"] == [
        {"resource": {"workspace": "acme", "repository": "api"}, "last_used": ANY}
    ]
    assert body["recommendation"] == {"remove_scopes": ["webhook"]}
    # Not for another resource, nor for someone who cannot manage it.
    assert client.get(f"{API}/{made['id']}/usage").status_code == 403
    other = f"/api/repositories/acme/lib/access-tokens/{made['id']}/usage"
    assert client.get(other, headers=ALICE).status_code == 404

    rotate = f"{API}/{made['id']}/rotate"
    for wider in (["pullrequest"], ["repository:admin"], "repository", [1], []):
        refused = client.post(rotate, json={"scopes": wider}, headers=ALICE)
        assert refused.status_code == 400, wider
        assert "scopes" in refused.get_json()["error"]["fields"]
    new = client.post(rotate, json={"scopes": ["repository"]}, headers=ALICE).get_json()
    assert new["id"] == made["id"] and new["scopes"] == ["repository"]
    assert client.get(REPO, headers=bearer(new["token"])).status_code == 200
    assert client.post(f"{REPO}/push", headers=bearer(new["token"])).status_code == 403
    shown = client.get(f"{API}/{made['id']}", headers=ALICE).get_json()
    assert shown["scopes"] == ["repository"]


def test_api_usage_of_a_canary_is_empty(client: Any, managed: AccessTokens) -> None:
    canary = managed.create_canary(name="decoy", workspace="acme", repository="api")
    body = client.get(f"{API}/{canary.token.id}/usage", headers=ALICE).get_json()
    assert body["scopes"] == body["resources"] == []
    assert body["recommendation"] == {"remove_scopes": []}


# -- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli(app: Flask) -> Any:
    runner = app.test_cli_runner()

    def run(*args: str) -> Any:
        return runner.invoke(args=["access-tokens", *args])

    return run


def test_cli_routes_lists_every_protected_route(cli: Any) -> None:
    result = cli("routes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(
        "POST" in line
        and "/repositories/<workspace>/<repo_slug>/pullrequests" in line
        and "scopes: pullrequest:write and pipeline" in line
        and "binding: resource in URL" in line
        for line in lines
    )
    assert any("scopes: webhook or runner" in line for line in lines)
    rows = json.loads(cli("routes", "--json").stdout)
    members = next(r for r in rows if r["rule"] == "/workspaces/<workspace>/members")
    assert members["methods"] == ["GET"] and members["scopes"] == ["account"]
    repos = next(r for r in rows if r["rule"] == "/workspaces/<workspace>/listing")
    assert repos["binding"] == "container"
    # Unprotected routes are not listed.
    assert all(not r["rule"].startswith("/api/") for r in rows)


def test_cli_usage_unused_and_narrowing(
    cli: Any, client: Any, db: SQLAlchemy, broad: tuple[str, str]
) -> None:
    secret, token_id = broad
    client.get(REPO, headers=bearer(secret))
    shown = cli("usage", token_id)
    assert shown.exit_code == 0, shown.output
    assert "Never needed: webhook, pipeline, account." in shown.stdout
    assert f"rotate {token_id} --scope repository:write" in shown.stdout
    assert json.loads(cli("usage", token_id, "--json").stdout)["recommendation"] == {
        "remove_scopes": ["webhook", "pipeline", "account"]
    }
    assert cli("usage", "nope").exit_code != 0
    # Tracked for less than the period: not listed.
    assert "0 access tokens" in cli("unused", "--days", "30").stdout
    db.session.execute(
        sa.update(AccessToken)
        .where(AccessToken.id == token_id)
        .values(created_at=utcnow() - timedelta(days=40))
    )
    db.session.commit()
    sent: list[Any] = []
    token_overprivileged.connect(lambda sender, **kw: sent.append(kw["unused"]), weak=False)
    try:
        listed = cli("unused", "--days", "30", "--notify")
        assert listed.exit_code == 0, listed.output
        assert f"{token_id}  'CI' on acme: unused webhook, pipeline, account" in listed.stdout
        assert "Sent 1 notice." in listed.stdout
        assert "Sent 0 notices." in cli("unused", "--days", "30", "--notify").stdout
    finally:
        token_overprivileged.receivers.clear()
    assert sent == [["webhook", "pipeline", "account"]]
    rows = json.loads(cli("unused", "--days", "30", "--json").stdout)
    assert rows == [{"id": token_id, "name": "CI", "unused": ["webhook", "pipeline", "account"]}]

    refused = cli("rotate", token_id, "--scope", "pullrequest")
    assert refused.exit_code != 0 and "narrow" in refused.output
    rotated = cli("rotate", token_id, "--scope", "repository:write", "--json")
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["scopes"] == ["repository:write"]
