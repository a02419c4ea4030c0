"""Usage tracking, the audit log and signals: what is written, when, and that
no secret ever reaches them or the logs."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from blinker import Signal
from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from sqlalchemy.exc import OperationalError

from flask_accesstokens import AccessTokens
from flask_accesstokens import AuthenticatedToken
from flask_accesstokens import token_authenticated
from flask_accesstokens import token_created
from flask_accesstokens import token_rejected
from flask_accesstokens import token_reused
from flask_accesstokens import token_revoked
from flask_accesstokens import token_rotated
from flask_accesstokens import TokenEvent
from flask_accesstokens.models import utcnow
from flask_accesstokens.pipeline import Pipeline

REPO = "/repositories/acme/api"


def last_used(db: SQLAlchemy, token_id: str) -> tuple[datetime | None, str | None]:
    with db.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT last_used_at, last_used_ip FROM accesstokens_token WHERE id = :id"),
            {"id": token_id},
        ).one()
    return (None if row[0] is None else row[0]), row[1]


@contextmanager
def count_token_updates(db: SQLAlchemy) -> Iterator[list[str]]:
    """Every UPDATE of the token table, as the database sees it."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ACCESSTOKENS_TOKEN"):
            seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)


@pytest.fixture
def made(app: Flask, tokens: AccessTokens) -> tuple[str, str]:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"], created_by="alice"
    )
    return new.secret, new.token.id


# -- last_used_at -------------------------------------------------------------------


def test_last_used_is_written_once_per_resolution(
    app: Flask, db: SQLAlchemy, made: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, token_id = made
    client = app.test_client()
    assert last_used(db, token_id) == (None, None)
    with count_token_updates(db) as updates:
        for _ in range(5):
            assert client.get(REPO, headers=bearer(secret)).status_code == 200
    assert len(updates) == 1
    first, ip = last_used(db, token_id)
    assert first is not None and ip == "127.0.0.1"

    later = utcnow() + timedelta(minutes=1, seconds=1)
    monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: later)
    with count_token_updates(db) as updates:
        for _ in range(3):
            response = client.get(
                REPO, headers=bearer(secret), environ_base={"REMOTE_ADDR": "203.0.113.7"}
            )
            assert response.status_code == 200
    assert len(updates) == 1
    second, ip = last_used(db, token_id)
    assert second is not None and second != first
    assert ip == "203.0.113.7"
    with app.app_context():
        db.session.remove()
        record = AccessTokens.service().get(token_id)
        assert record.last_used_at == later
        assert record.last_used_ip == "203.0.113.7"


def test_resolution_is_configurable(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_LAST_USED_RESOLUTION=0)
    try:
        with app.app_context():
            secret = tokens.create_token(
                name="t", workspace="acme", repository="api", scopes=["repository"]
            ).secret
        client = app.test_client()
        with app.app_context(), count_token_updates(db) as updates:
            for _ in range(3):
                assert client.get(REPO, headers=bearer(secret)).status_code == 200
        assert len(updates) == 3
    finally:
        _close(app, db)


def test_last_used_is_not_written_when_the_token_is_refused(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    revoked = tokens.create_token(
        name="r", workspace="acme", repository="api", scopes=["repository"]
    )
    revoked_id = revoked.token.id
    tokens.revoke_token(revoked_id)
    expiring = tokens.create_token(
        name="e",
        workspace="acme",
        repository="api",
        scopes=["repository"],
        expires_at=utcnow() + timedelta(minutes=5),
    )
    expiring_id = expiring.token.id
    later = utcnow() + timedelta(minutes=6)
    monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: later)
    with count_token_updates(db) as updates:
        assert client.get(REPO, headers=bearer(revoked.secret)).status_code == 401
        assert client.get(REPO, headers=bearer(expiring.secret)).status_code == 401
    assert updates == []
    assert last_used(db, revoked_id) == (None, None)
    assert last_used(db, expiring_id) == (None, None)


@pytest.mark.parametrize(
    "url", ["/repositories/acme/api/push", "/repositories/acme/lib"], ids=["scope", "resource"]
)
def test_last_used_is_not_written_on_a_403(
    app: Flask, db: SQLAlchemy, made: tuple[str, str], url: str
) -> None:
    secret, token_id = made
    client = app.test_client()
    method = client.post if url.endswith("push") else client.get
    assert method(url, headers=bearer(secret)).status_code == 403
    assert last_used(db, token_id) == (None, None)


def test_a_failed_write_never_fails_the_request_and_is_logged(
    app: Flask,
    db: SQLAlchemy,
    made: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret, token_id = made

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("UPDATE accesstokens_token", {}, Exception("database is locked"))

    monkeypatch.setattr(db.engine, "begin", broken)
    caplog.set_level(logging.DEBUG)
    response = app.test_client().get(REPO, headers=bearer(secret))
    assert response.status_code == 200
    monkeypatch.undo()
    assert last_used(db, token_id) == (None, None)
    warnings = [
        r
        for r in caplog.records
        if r.name == "flask_accesstokens"
        and r.levelno >= logging.WARNING
        and "manager_loader" not in r.getMessage()  # the start-up notice
    ]
    assert warnings, "the failed write is logged"
    assert token_id in warnings[0].getMessage()
    _assert_no_secret_in_logs(caplog, [secret])


# -- audit events ----------------------------------------------------------------------


def _events(db: SQLAlchemy, **where: Any) -> list[TokenEvent]:
    db.session.remove()
    query = sa.select(TokenEvent).order_by(TokenEvent.id)
    for key, value in where.items():
        query = query.where(getattr(TokenEvent, key) == value)
    return list(db.session.scalars(query))


def test_management_actions_are_audited(app: Flask, db: SQLAlchemy, tokens: AccessTokens) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"], created_by="alice"
    )
    token_id = new.token.id
    tokens.rotate_token(token_id, rotated_by="bob", grace=timedelta(minutes=2))
    tokens.revoke_token(token_id, revoked_by="carol")
    events = _events(db, token_id=token_id)
    assert [(e.action, e.actor) for e in events] == [
        ("created", "alice"),
        ("rotated", "bob"),
        ("revoked", "carol"),
    ]
    for event in events:
        assert (event.workspace, event.project, event.repository) == ("acme", None, "api")
    assert "120" in (events[1].detail or "")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def monotonic(self) -> float:
        return self.now


def test_failed_attempts_are_aggregated(
    app: Flask, db: SQLAlchemy, made: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, token_id = made
    clock = FakeClock()
    monkeypatch.setattr("flask_accesstokens.storewrites.time", clock)
    client = app.test_client()
    for _ in range(5):
        assert client.get(REPO, headers=bearer("garbage")).status_code == 401
    # A flood is one row, not five.
    first = _events(db, action="auth_failed")
    assert [(e.detail, e.client, e.count, e.token_id) for e in first] == [
        ("malformed", "127.0.0.1", 1, None)
    ]
    for _ in range(3):  # a known token refused for its scope: counted per token
        assert client.post(f"{REPO}/push", headers=bearer(secret)).status_code == 403
    other = {"REMOTE_ADDR": "198.51.100.1"}
    assert client.get(REPO, headers=bearer("garbage"), environ_base=other).status_code == 401

    clock.now += 61
    assert client.get(REPO, headers=bearer("garbage")).status_code == 401
    assert client.post(f"{REPO}/push", headers=bearer(secret)).status_code == 403
    rows = [(e.detail, e.client, e.count, e.token_id) for e in _events(db, action="auth_failed")]
    assert rows == [
        ("malformed", "127.0.0.1", 1, None),
        ("insufficient_scope", "127.0.0.1", 1, token_id),
        ("malformed", "198.51.100.1", 1, None),
        ("malformed", "127.0.0.1", 5, None),  # the 4 held back, plus this one
        ("insufficient_scope", "127.0.0.1", 3, token_id),
    ]


# -- signals ---------------------------------------------------------------------------


@contextmanager
def recording(app: Flask, *signals: Signal) -> Iterator[list[tuple[Signal, Any, dict[str, Any]]]]:
    seen: list[tuple[Signal, Any, dict[str, Any]]] = []
    receivers = []
    for signal in signals:

        def receive(sender: Any, _signal: Signal = signal, **kwargs: Any) -> None:
            seen.append((_signal, sender, kwargs))

        receivers.append(receive)
        signal.connect(receive, sender=app)
    try:
        yield seen
    finally:
        for signal, receive in zip(signals, receivers, strict=True):
            signal.disconnect(receive, sender=app)


ALL_SIGNALS = (
    token_created,
    token_revoked,
    token_rotated,
    token_authenticated,
    token_rejected,
    token_reused,
)


def test_management_signals(app: Flask, tokens: AccessTokens) -> None:
    with recording(app, *ALL_SIGNALS) as seen:
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"], created_by="al"
        )
        token_id = new.token.id
        before = utcnow()
        rotated = tokens.rotate_token(token_id, rotated_by="bo", grace=timedelta(minutes=3))
        tokens.revoke_token(token_id, revoked_by="cy")
        tokens.revoke_token(token_id, revoked_by="cy")  # idempotent: no second signal
    assert rotated is not None
    assert [s for s, _, _ in seen] == [token_created, token_rotated, token_revoked]
    assert all(sender is app for _, sender, _ in seen)
    created, rot, revoked = (kwargs for _, _, kwargs in seen)
    assert created["token"].id == token_id and created["actor"] == "al"
    assert rot["token"].id == token_id and rot["actor"] == "bo"
    assert before + timedelta(minutes=3) <= rot["grace_until"] <= utcnow() + timedelta(minutes=3)
    assert revoked["token"].id == token_id and revoked["actor"] == "cy"
    _assert_no_secret_in(seen, [new.secret, rotated.secret])


def test_request_signals(
    app: Flask, tokens: AccessTokens, made: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, token_id = made
    client = app.test_client()
    with recording(app, *ALL_SIGNALS) as seen:
        client.get(REPO, headers=bearer(secret))
    assert len(seen) == 1
    signal, sender, kwargs = seen[0]
    assert signal is token_authenticated and sender is app
    token = kwargs["token"]
    assert isinstance(token, AuthenticatedToken)
    assert (token.id, token.name, token.type, token.repository) == (
        token_id,
        "CI",
        "repository",
        "api",
    )

    with recording(app, *ALL_SIGNALS) as seen:
        client.get(REPO, headers=bearer("garbage"))
        client.post(f"{REPO}/push", headers=bearer(secret))
        client.get("/repositories/acme/lib", headers=bearer(secret))
        client.get(REPO)  # no token at all: nothing was rejected
    rejected = [(k["reason"], k["token_id"], k["client"]) for s, _, k in seen]
    assert all(s is token_rejected for s, _, _ in seen)
    assert rejected == [
        ("malformed", None, "127.0.0.1"),
        ("insufficient_scope", token_id, "127.0.0.1"),
        ("wrong_resource", token_id, "127.0.0.1"),
    ]

    rotated = tokens.rotate_token(token_id, grace=timedelta(0))
    assert rotated is not None
    with recording(app, *ALL_SIGNALS) as seen:
        assert client.get(REPO, headers=bearer(secret)).status_code == 401
    assert [s for s, _, _ in seen] == [token_reused, token_rejected]
    assert seen[0][2] == {"token_id": token_id, "client": "127.0.0.1", "revoked": True}
    assert seen[1][2]["reason"] == "rotated"
    with recording(app, *ALL_SIGNALS) as seen:
        assert client.get(REPO, headers=bearer(rotated.secret)).status_code == 401
    assert [(s, k["reason"]) for s, _, k in seen] == [(token_rejected, "revoked")]


def test_unknown_and_expired_rejections(
    app: Flask, tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_accesstokens import tokenformat

    client = app.test_client()
    expiring = tokens.create_token(
        name="e",
        workspace="acme",
        repository="api",
        scopes=["repository"],
        expires_at=utcnow() + timedelta(minutes=1),
    )
    expiring_id = expiring.token.id
    later = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: later)
    with recording(app, token_rejected) as seen:
        client.get(REPO, headers=bearer(tokenformat.generate("bbat")))
        client.get(REPO, headers=bearer(expiring.secret))
    assert [(k["reason"], k["token_id"]) for _, _, k in seen] == [
        ("unknown", None),
        ("expired", expiring_id),
    ]


# -- secrets never in logs or exceptions --------------------------------------------------


def _fragments(secrets: list[str]) -> set[str]:
    pieces: set[str] = set()
    for secret in secrets:
        body = secret.split("_", 1)[1]
        pieces |= {secret, body}
        pieces |= {body[i : i + 8] for i in range(len(body) - 7)}
    return pieces


def _assert_no_secret_in_logs(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> None:
    fragments = _fragments(secrets)
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        leaked = [f for f in fragments if f in text]
        assert not leaked, (record.name, record.getMessage())


def _assert_no_secret_in(
    seen: list[tuple[Signal, Any, dict[str, Any]]], secrets: list[str]
) -> None:
    fragments = _fragments(secrets)
    for _, _, kwargs in seen:
        for value in kwargs.values():
            text = repr(value) + str(value) + repr(getattr(value, "__dict__", ""))
            assert not any(f in text for f in fragments), value


def test_secrets_never_reach_the_logs(
    app: Flask,
    db: SQLAlchemy,
    tokens: AccessTokens,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # SQL and parameters too
    client = app.test_client()
    secrets: list[str] = []
    with recording(app, *ALL_SIGNALS) as seen:
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        token_id = new.token.id
        secrets.append(new.secret)
        for headers in (
            bearer(new.secret),
            bearer(new.secret[:-1] + "0"),
            bearer(new.secret + " trailing"),
            {"Authorization": "Bearer " + new.secret * 30},
        ):
            client.get(REPO, headers=headers)
        client.get("/repositories/acme/lib", headers=bearer(new.secret))
        client.post(f"{REPO}/push", headers=bearer(new.secret))
        rotated = tokens.rotate_token(token_id, grace=timedelta(0))
        assert rotated is not None
        secrets.append(rotated.secret)
        client.get(REPO, headers=bearer(new.secret))  # reuse
        client.get(REPO, headers=bearer(rotated.secret))
        tokens.revoke_token(token_id)

        # Failing writes log with tracebacks; those must be clean too.
        third = tokens.create_token(
            name="3", workspace="acme", repository="api", scopes=["repository"]
        )
        secrets.append(third.secret)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise OperationalError("UPDATE", {}, Exception("disk I/O error"))

        monkeypatch.setattr(db.engine, "begin", broken)
        assert client.get(REPO, headers=bearer(third.secret)).status_code == 200
        client.get(REPO, headers=bearer("garbage"))
        monkeypatch.undo()
    names = {r.name for r in caplog.records}
    assert "flask_accesstokens" in names
    assert any(name.startswith("sqlalchemy.engine") for name in names)  # SQL echo too
    _assert_no_secret_in_logs(caplog, secrets)
    _assert_no_secret_in(seen, secrets)


def test_secrets_never_reach_exception_messages(app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    store = Pipeline.of(current_app)
    tokens.revoke_token(new.token.id)
    for presented in (new.secret, new.secret[:-1] + "0", new.secret + "x"):
        with pytest.raises(Exception) as info:
            store.authenticate(presented, "127.0.0.1")
        text = "".join(traceback.format_exception(info.value))
        text += repr(info.value) + str(info.value.args)
        assert not any(f in text for f in _fragments([new.secret]))


def _close(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()
