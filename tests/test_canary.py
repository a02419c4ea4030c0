"""Canary tokens: they answer exactly like an unknown token, raise the alarm
after the answer (also when the client is throttled), cannot be rotated, and
disarm when revoked. From the Python API, the JSON API, the CLI and the
admin pages."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import request
from flask import session
from flask_sqlalchemy import SQLAlchemy
from helpers import basic
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import canary_tripped
from flask_accesstokens import Resource
from flask_accesstokens import TokenConflict
from flask_accesstokens import tokenformat
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.serialize import token_json

ROUTES = ["/repositories/acme/api", "/workspaces/acme/members", "/anything"]


def answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.items()), response.data


@pytest.fixture
def canary(app: Flask, tokens: AccessTokens) -> Any:
    return tokens.create_canary(
        name="canary: deploy .env", workspace="acme", repository="api", created_by="security"
    )


@pytest.fixture
def alarms(app: Flask) -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    with canary_tripped.connected_to(receive, app):
        yield seen


def canary_events(tokens: AccessTokens, token_id: str) -> list[Any]:
    return [e for e in tokens.audit_events(token_id) if e.action == "canary_tripped"]


def test_create_canary(tokens: AccessTokens, canary: Any) -> None:
    assert tokenformat.is_well_formed(canary.secret, "bbat")
    assert "secret=***" in repr(canary)
    record = canary.token
    assert record.canary is True and tuple(record.scopes) == () and record.expires_at is None
    assert (record.type, record.workspace, record.repository) == ("repository", "acme", "api")
    data = token_json(tokens.get_token(record.id))  # type: ignore[arg-type]
    assert data["canary"] is True and data["scopes"] == [] and data["state"] == "active"
    normal = tokens.create_token(name="CI", workspace="acme", scopes=["account"])
    assert token_json(normal.token)["canary"] is False
    # Listed like any other token.
    assert [t.id for t in tokens.list_tokens("acme", repository="api")] == [record.id]
    with pytest.raises(ValueError):
        tokens.create_canary(name=" ", workspace="acme")
    with pytest.raises(ValueError):
        tokens.create_canary(name="x", workspace="acme", repository="a/b")


def test_canary_ignores_max_lifetime(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_MAX_LIFETIME=timedelta(days=30))
    try:
        with app.app_context():
            with pytest.raises(ValueError):
                tokens.create_token(name="CI", workspace="acme", scopes=["account"])
            assert tokens.create_canary(name="c", workspace="acme").token.expires_at is None
    finally:
        # In a context of its own: the one above has let go of its connection.
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


@pytest.mark.parametrize("route", ROUTES)
def test_canary_answers_like_an_unknown_token(
    app: Flask, client: Any, canary: Any, alarms: list[dict[str, Any]], route: str
) -> None:
    for credentials in (bearer, basic):
        unknown = client.get(route, headers=credentials(tokenformat.generate("bbat")))
        tripped = client.get(route, headers=credentials(canary.secret), buffered=True)
        assert answer(tripped) == answer(unknown)
        assert tripped.status_code == 401
    assert len(alarms) == 2
    assert all(a["token"].id == canary.token.id and a["client"] == "127.0.0.1" for a in alarms)


def test_alarm_is_audited_logged_and_signalled(
    app: Flask,
    client: Any,
    tokens: AccessTokens,
    canary: Any,
    alarms: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_accesstokens"):
        response = client.get(
            "/repositories/acme/api",
            headers=bearer(canary.secret),
            environ_base={"REMOTE_ADDR": "198.51.100.23"},
            buffered=True,
        )
    assert response.status_code == 401
    assert [a["client"] for a in alarms] == ["198.51.100.23"]
    assert alarms[0]["token"].name == "canary: deploy .env"
    events = canary_events(tokens, canary.token.id)
    assert [(e.client, e.workspace, e.repository) for e in events] == [
        ("198.51.100.23", "acme", "api")
    ]
    lines = [r for r in caplog.records if "Canary" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "198.51.100.23" in lines[0].getMessage() and canary.token.id in lines[0].getMessage()
    assert canary.secret not in caplog.text


def test_a_flood_of_uses_is_signalled_each_time_and_written_once_per_interval(
    database_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever holds a canary cannot turn requests into writes: every use is
    signalled, but the audit row and the log line come once per interval,
    the first at once, the uses in between counted into the next."""
    interval = 0.5
    app, db, tokens = make_app(
        database_uri, ACCESSTOKENS_FAILURE_AUDIT_INTERVAL=timedelta(seconds=interval)
    )
    seen: list[str | None] = []
    try:
        with app.app_context():
            canary = tokens.create_canary(name="decoy", workspace="acme", repository="api")
        client = app.test_client()

        def use() -> None:
            response = client.get(
                "/repositories/acme/api", headers=bearer(canary.secret), buffered=True
            )
            assert response.status_code == 401

        with (
            canary_tripped.connected_to(lambda _, **kw: seen.append(kw["client"]), app),
            caplog.at_level(logging.WARNING, logger="flask_accesstokens"),
        ):
            started = time.monotonic()
            for _ in range(30):
                use()
            flood = time.monotonic() - started
            with app.app_context():
                events = canary_events(tokens, canary.token.id)
            # The first use at once; then at most a row per interval the
            # flood lasted (a slow machine may take several intervals).
            first = min(events, key=lambda e: e.at)
            assert (first.count, first.detail) == (1, "presented")
            assert len(events) <= 1 + int(flood / interval)
            time.sleep(interval + 0.1)
            use()
        assert len(seen) == 31
        with app.app_context():
            events = canary_events(tokens, canary.token.id)
        elapsed = time.monotonic() - started
        assert sum(e.count for e in events) == 31  # every use counted, none lost
        assert 2 <= len(events) <= 2 + int(elapsed / interval)
        assert all(e.detail == f"presented {e.count} times" for e in events if e.count > 1)
        lines = [r for r in caplog.records if "Canary" in r.getMessage()]
        assert len(lines) == len(events)
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.session.remove()
            db.engine.dispose()


def test_alarm_waits_for_the_answer(
    app: Flask, client: Any, tokens: AccessTokens, canary: Any, alarms: list[dict[str, Any]]
) -> None:
    """The alarm runs when the server closes the response, not before."""
    response = client.get("/repositories/acme/api", headers=bearer(canary.secret))
    assert response.status_code == 401
    assert alarms == [] and canary_events(tokens, canary.token.id) == []
    response.close()
    assert len(alarms) == 1 and len(canary_events(tokens, canary.token.id)) == 1


@pytest.fixture
def work(app: Flask, db: SQLAlchemy, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What a request does against the database: each lookup of the request
    path (``find``) and every statement through the app's engine."""
    done: list[str] = []
    store = Pipeline.of(app).store
    real = store.find

    def find(digests: list[str]) -> Any:
        done.append("lookup")
        return real(digests)

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        done.append(sql.split()[0].upper())

    monkeypatch.setattr(store, "find", find)
    sa.event.listen(db.engine, "before_cursor_execute", statement)
    yield done
    sa.event.remove(db.engine, "before_cursor_execute", statement)


def test_canary_does_no_more_synchronous_database_work(
    app: Flask, client: Any, canary: Any, alarms: list[dict[str, Any]], work: list[str]
) -> None:
    """Counted up to the moment the answer is complete: the canary's record
    load, audit write and signal come only after it."""
    headers_unknown = bearer(tokenformat.generate("bbat"))
    warm = client.get("/repositories/acme/api", headers=headers_unknown, buffered=True)
    assert warm.status_code == 401  # the failure's first audit row is written here
    before_close = []
    canaries = 0
    for attempt in ("unknown", "canary", "unknown", "canary"):
        work.clear()
        secret = canary.secret if attempt == "canary" else tokenformat.generate("bbat")
        response = client.get("/repositories/acme/api", headers=bearer(secret))
        before_close.append((attempt, list(work)))
        work.clear()
        response.close()
        after = list(work)
        if attempt == "canary":
            canaries += 1
            if canaries == 1:
                assert "INSERT" in after  # the alarm's audit row, after the answer
            else:  # within the interval: loaded for the signal, counted, not written
                assert after and "INSERT" not in after
        else:
            assert after == []
    unknown_work = [w for kind, w in before_close if kind == "unknown"]
    canary_work = [w for kind, w in before_close if kind == "canary"]
    assert unknown_work[0] == unknown_work[1] == canary_work[0] == canary_work[1] == ["lookup"]
    assert len(alarms) == 2


def test_canary_answers_like_unknown_while_throttled(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_RATELIMIT="2/minute")
    seen: list[dict[str, Any]] = []
    try:
        with app.app_context():
            canary = tokens.create_canary(name="c", workspace="acme", repository="api")
        client = app.test_client()
        with canary_tripped.connected_to(lambda sender, **kw: seen.append(kw), app):
            for _ in range(2):
                unknown = bearer(tokenformat.generate("bbat"))
                assert client.get("/repositories/acme/api", headers=unknown).status_code == 401
            throttled_unknown = client.get(
                "/repositories/acme/api", headers=bearer(tokenformat.generate("bbat"))
            )
            throttled_canary = client.get(
                "/repositories/acme/api", headers=bearer(canary.secret), buffered=True
            )
        assert throttled_unknown.status_code == 429
        assert answer(throttled_canary) == answer(throttled_unknown)
        assert len(seen) == 1 and seen[0]["client"] == "127.0.0.1"
        with app.app_context():
            assert len(canary_events(tokens, canary.token.id)) == 1
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_revoked_canary_answers_like_unknown_and_stays_quiet(
    app: Flask, client: Any, tokens: AccessTokens, canary: Any, alarms: list[dict[str, Any]]
) -> None:
    tokens.revoke_token(canary.token.id, revoked_by="security")
    unknown = client.get("/repositories/acme/api", headers=bearer(tokenformat.generate("bbat")))
    tripped = client.get("/repositories/acme/api", headers=bearer(canary.secret), buffered=True)
    assert answer(tripped) == answer(unknown)
    assert alarms == [] and canary_events(tokens, canary.token.id) == []


def test_canary_cannot_be_rotated(tokens: AccessTokens, canary: Any) -> None:
    with pytest.raises(TokenConflict, match="canary"):
        tokens.rotate_token(canary.token.id)
    # Still the one secret, still armed.
    record = tokens.get_token(canary.token.id)
    assert record is not None and record.generation == 0 and record.revoked_at is None


# -- the JSON API -------------------------------------------------------------------------------


@pytest.fixture
def managing(tokens: AccessTokens) -> AccessTokens:
    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return "alice"

    return tokens


def test_api_lists_rotates_and_revokes_canaries(
    client: Any, managing: AccessTokens, canary: Any
) -> None:
    base = "/api/repositories/acme/api/access-tokens"
    listed = client.get(base).get_json()["values"]
    assert [(t["id"], t["canary"], t["scopes"]) for t in listed] == [(canary.token.id, True, [])]
    shown = client.get(f"{base}/{canary.token.id}").get_json()
    assert shown["canary"] is True and shown["leak_provider"] is None and shown["leak_url"] is None
    rotated = client.post(f"{base}/{canary.token.id}/rotate", json={})
    assert rotated.status_code == 409 and "canary" in rotated.get_json()["error"]["message"]
    assert client.delete(f"{base}/{canary.token.id}").status_code == 204
    assert client.get(f"{base}/{canary.token.id}").get_json()["state"] == "revoked"


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_create_canary(app: Flask, tokens: AccessTokens) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "access-tokens",
            "create-canary",
            "--workspace",
            "acme",
            "--repository",
            "api",
            "--name",
            "canary: wiki",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["canary"] is True and data["scopes"] == [] and data["created_by"] == "cli"
    assert tokenformat.is_well_formed(data["token"], "bbat")
    plain = runner.invoke(
        args=["access-tokens", "create-canary", "--workspace", "acme", "--name", "canary: ws"]
    )
    assert plain.exit_code == 0 and "canary" in plain.output
    secret = re.search(r"bbat_\w+", plain.output)
    assert secret is not None
    listed = runner.invoke(args=["access-tokens", "list", "--workspace", "acme"])
    assert "active (canary)" in listed.output
    both = runner.invoke(
        args=[
            "access-tokens",
            "create-canary",
            "--workspace",
            "acme",
            "--project",
            "API",
            "--repository",
            "api",
            "--name",
            "x",
        ]
    )
    assert both.exit_code != 0
    command = ["access-tokens", "create-canary", "--workspace", "acme", "--name", "x"]
    scoped = runner.invoke(args=[*command, "--scope", "a"])
    assert scoped.exit_code != 0  # a canary takes no scopes
    assert len(tokens.list_tokens("acme")) == 1


# -- the admin pages ----------------------------------------------------------------------------


@pytest.fixture
def admin(database_uri: str) -> Iterator[tuple[Flask, AccessTokens, Any]]:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_ADMIN_URL_PREFIX="/settings")

    @app.get("/test-login")
    def login() -> str:
        session["user"] = request.args["user"]
        return "signed in"

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return "alice" if session.get("user") == "alice" else None

    with app.app_context():
        client = app.test_client()
        assert client.get("/test-login?user=alice").status_code == 200
        yield app, tokens, client
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def _form(client: Any, url: str) -> dict[str, str]:
    html = client.get(url).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    form_id = re.search(r'name="form_id" value="([^"]+)"', html)
    assert csrf and form_id and 'name="canary"' in html
    return {"csrf_token": csrf.group(1), "form_id": form_id.group(1)}


def test_admin_creates_and_shows_canaries(admin: tuple[Flask, AccessTokens, Any]) -> None:
    app, tokens, client = admin
    base = "/settings/repositories/acme/api/access-tokens"
    data = {**_form(client, f"{base}/new"), "name": "canary: ci vars", "canary": "1"}
    response = client.post(f"{base}/new", data=data)
    assert response.status_code == 200 and "canary token" in response.text
    secret = re.search(r'id="token-secret"[^>]*>(bbat_\w+)<', response.text)
    assert secret is not None
    (record,) = tokens.list_tokens("acme", repository="api")
    assert record.canary and tuple(record.scopes) == () and record.created_by == "alice"
    listing = client.get(base).text
    row = listing[listing.index(f'id="token-{record.id}"') :]
    row = row[: row.index("</tr>")]
    assert "Canary" in row and "Revoke" in row and "Rotate" not in row
    # Without the checkbox, scopes are required as before.
    data = {**_form(client, f"{base}/new"), "name": "CI"}
    assert client.post(f"{base}/new", data=data).status_code == 400
    assert len(tokens.list_tokens("acme", repository="api")) == 1


def test_admin_shows_leak_revocations(admin: tuple[Flask, AccessTokens, Any]) -> None:
    app, tokens, client = admin
    base = "/settings/repositories/acme/api/access-tokens"
    linked = tokens.create_token(
        name="linked", workspace="acme", repository="api", scopes=["repository"]
    )
    scripted = tokens.create_token(
        name="scripted", workspace="acme", repository="api", scopes=["repository"]
    )
    response = client.post(
        "/api/access-tokens/revoke", json={"access_tokens": [linked.secret]}, buffered=True
    )
    assert response.status_code == 202
    service = tokens.service()
    record = service.get(scripted.token.id)
    assert record is not None
    # As a scanner would have recorded it; only http(s) URLs become links.
    record.leak_provider, record.leak_url = "github", "javascript:alert(1)"
    service.session.commit()
    service.revoke(scripted.token.id, revoked_by="secret scanning: github")
    record = service.get(linked.token.id)
    assert record is not None
    record.leak_url = "https://github.com/o/r/blob/x/.env"
    service.session.commit()
    listing = client.get(base).text
    assert "Leaked: reported by public" in listing and "by public revocation" in listing
    assert 'href="https://github.com/o/r/blob/x/.env"' in listing
    assert "Leaked: reported by github, found at javascript:alert(1)" in listing
    assert 'href="javascript:' not in listing
