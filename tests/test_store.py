"""Token storage through the Python API: validation that writes nothing,
listing, revocation, rotation, expiry, key rotation, and no secret at rest."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import NewToken
from flask_accesstokens import TokenConflict
from flask_accesstokens import TokenEvent
from flask_accesstokens import TokenValidationError
from flask_accesstokens.models import utcnow

TABLES = ("accesstokens_token", "accesstokens_secret", "accesstokens_event")
REPO = "/repositories/acme/api"


def counts(db: SQLAlchemy) -> dict[str, int]:
    return {
        table: db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in TABLES
    }


def close(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def repo_token(tokens: AccessTokens, **kwargs: Any) -> NewToken:
    args: dict[str, Any] = {
        "name": "CI",
        "workspace": "acme",
        "repository": "api",
        "scopes": ["repository"],
    }
    args.update(kwargs)
    return tokens.create_token(**args)


# -- create_token validation ----------------------------------------------------

BAD_INPUT: list[tuple[str, dict[str, Any], str]] = [
    ("empty name", {"name": ""}, "name"),
    ("blank name", {"name": "   "}, "name"),
    ("over-long name", {"name": "x" * 256}, "name"),
    ("control character in name", {"name": "a\x00b"}, "name"),
    ("no scopes", {"scopes": []}, "scopes"),
    ("unknown scope", {"scopes": ["repository", "repo:everything"]}, "scopes"),
    ("not a scope name", {"scopes": [1]}, "scopes"),
    ("a string, not a list", {"scopes": "repository"}, "scopes"),
    ("project on a repository token", {"scopes": ["project"]}, "scopes"),
    ("account on a repository token", {"scopes": ["account"]}, "scopes"),
    (
        "account on a project token",
        {"repository": None, "project": "API", "scopes": ["account"]},
        "scopes",
    ),
    (
        "project:admin on a project token",
        {"repository": None, "project": "API", "scopes": ["project:admin"]},
        "scopes",
    ),
    ("both project and repository", {"project": "API"}, "project"),
    ("no workspace", {"workspace": ""}, "workspace"),
    ("naive expiry", {"expires_at": datetime(2999, 1, 1)}, "expires_at"),
    ("expiry in the past", {"expires_at": datetime(2000, 1, 1, tzinfo=timezone.utc)}, "expires_at"),
]


def test_create_token_refuses_bad_input_and_writes_nothing(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens
) -> None:
    repo_token(tokens, name="existing")
    before = counts(db)
    for why, bad, field in BAD_INPUT:
        with pytest.raises(ValueError) as info:
            repo_token(tokens, **bad)
        assert isinstance(info.value, TokenValidationError), why
        assert info.value.field == field, why
        assert str(info.value).startswith(f"{field}: "), why
        assert not db.session.new and not db.session.dirty, why
        assert counts(db) == before, why
        db.session.remove()
        assert counts(db) == before, why


@pytest.mark.parametrize("empty", [{"repository": ""}, {"repository": None, "project": ""}])
def test_an_empty_resource_name_is_refused_not_widened(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens, empty: dict[str, Any]
) -> None:
    before = counts(db)
    with pytest.raises(ValueError):
        repo_token(tokens, **empty)
    assert counts(db) == before


def test_name_limits(app: Flask, tokens: AccessTokens) -> None:
    assert repo_token(tokens, name="x" * 255).token.name == "x" * 255
    assert repo_token(tokens, name="  Deploy bot  ").token.name == "Deploy bot"


def test_created_record_fields(app: Flask, tokens: AccessTokens) -> None:
    before = utcnow()
    new = repo_token(tokens, scopes=["pullrequest:write", "repository"], created_by="alice")
    after = utcnow()
    record = new.token
    assert isinstance(record.id, str) and record.id
    assert (record.name, record.type, record.workspace) == ("CI", "repository", "acme")
    assert (record.project, record.repository) == (None, "api")
    assert sorted(record.scopes) == ["pullrequest:write", "repository"]
    assert record.created_by == "alice"
    assert before <= record.created_at <= after
    assert record.last_used_at is None and record.revoked_at is None
    assert record.expires_at is None  # never expires by default
    assert record.id not in new.secret
    assert new.secret not in repr(new)


def test_project_and_workspace_tokens(app: Flask, tokens: AccessTokens) -> None:
    project = tokens.create_token(name="p", workspace="acme", project="API", scopes=["project"])
    assert (project.token.type, project.token.project, project.token.repository) == (
        "project",
        "API",
        None,
    )
    ws = tokens.create_token(name="w", workspace="acme", scopes=["account"])
    assert (ws.token.type, ws.token.project, ws.token.repository) == ("workspace", None, None)


def test_datetimes_are_timezone_aware_utc(app: Flask, db: SQLAlchemy, tokens: AccessTokens) -> None:
    expires = datetime.now(timezone(timedelta(hours=5))) + timedelta(days=1)
    new = repo_token(tokens, expires_at=expires)
    token_id = new.token.id
    client = app.test_client()
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200
    tokens.revoke_token(token_id, revoked_by="alice")
    db.session.remove()
    record = tokens.get_token(token_id)
    assert record is not None
    for field in ("created_at", "last_used_at", "revoked_at", "expires_at"):
        value = getattr(record, field)
        assert isinstance(value, datetime), field
        assert value.utcoffset() == timedelta(0), field
    assert record.expires_at == expires
    for event in db.session.scalars(sa.select(TokenEvent)):
        assert event.at.utcoffset() == timedelta(0)


# -- reading ---------------------------------------------------------------------


def test_get_token(app: Flask, tokens: AccessTokens) -> None:
    new = repo_token(tokens)
    assert tokens.get_token(new.token.id) is not None
    assert tokens.get_token(new.token.id).name == "CI"
    assert tokens.get_token("0" * 32) is None
    assert tokens.get_token("not an id") is None
    assert tokens.get_token(new.secret) is None
    assert tokens.get_token("") is None


def test_list_tokens_is_exact_and_newest_first(app: Flask, tokens: AccessTokens) -> None:
    api = [repo_token(tokens, name=f"api {i}").token.id for i in range(3)]
    repo_token(tokens, repository="lib")
    repo_token(tokens, workspace="hobby")
    project = tokens.create_token(name="p", workspace="acme", project="API", scopes=["project"])
    tokens.create_token(name="p2", workspace="acme", project="WEB", scopes=["project"])
    ws = tokens.create_token(name="w", workspace="acme", scopes=["repository"])

    assert [t.id for t in tokens.list_tokens("acme", repository="api")] == api[::-1]
    assert [t.id for t in tokens.list_tokens(workspace="acme", project="API")] == [project.token.id]
    assert [t.id for t in tokens.list_tokens("acme")] == [ws.token.id]
    assert tokens.list_tokens("acme", repository="ghost") == []
    assert tokens.list_tokens("nobody") == []


# -- revocation ------------------------------------------------------------------


def test_revoke_is_idempotent(app: Flask, db: SQLAlchemy, tokens: AccessTokens) -> None:
    new = repo_token(tokens)
    first = tokens.revoke_token(new.token.id, revoked_by="alice")
    assert first is not None and first.revoked_at is not None
    revoked_at = first.revoked_at
    again = tokens.revoke_token(new.token.id, revoked_by="bob")
    assert again is not None
    assert again.revoked_at == revoked_at
    assert again.revoked_by == "alice"
    assert tokens.revoke_token("0" * 32) is None
    actions = db.session.scalars(
        sa.select(TokenEvent.action).where(TokenEvent.token_id == new.token.id)
    ).all()
    assert sorted(actions) == ["created", "revoked"]


def test_revoke_resource_tokens(app: Flask, tokens: AccessTokens) -> None:
    client = app.test_client()
    made = {
        "api": repo_token(tokens),
        "api2": repo_token(tokens, name="second"),
        "lib": repo_token(tokens, repository="lib"),
        "hobby": repo_token(tokens, workspace="hobby", repository="notes"),
        "API": tokens.create_token(name="p", workspace="acme", project="API", scopes=["project"]),
        "WEB": tokens.create_token(name="p", workspace="acme", project="WEB", scopes=["project"]),
        "acme": tokens.create_token(name="w", workspace="acme", scopes=["repository"]),
        "hobbyws": tokens.create_token(name="w", workspace="hobby", scopes=["repository"]),
    }

    def alive() -> set[str]:
        return {k for k, v in made.items() if tokens.get_token(v.token.id).revoked_at is None}

    assert tokens.revoke_resource_tokens("acme", repository="api") == 2
    assert alive() == {"lib", "hobby", "API", "WEB", "acme", "hobbyws"}
    assert client.get(REPO, headers=bearer(made["api"].secret)).status_code == 401
    assert tokens.revoke_resource_tokens("acme", repository="api") == 0

    assert tokens.revoke_resource_tokens("acme", project="API") == 1
    assert alive() == {"lib", "hobby", "WEB", "acme", "hobbyws"}
    assert client.get(REPO, headers=bearer(made["API"].secret)).status_code == 401

    assert tokens.revoke_resource_tokens("acme") == 3
    assert alive() == {"hobby", "hobbyws"}
    assert client.get(REPO, headers=bearer(made["acme"].secret)).status_code == 401
    assert (
        client.get("/repositories/acme/lib", headers=bearer(made["lib"].secret)).status_code == 401
    )
    notes = "/repositories/hobby/notes"
    assert client.get(notes, headers=bearer(made["hobby"].secret)).status_code == 200


def test_revocation_is_seen_by_a_second_app_on_the_same_database(database_uri: str) -> None:
    """The second app stands in for a second worker process."""
    first, db1, tokens1 = make_app(database_uri)
    second, db2, tokens2 = make_app(database_uri)
    try:
        with first.app_context():
            new = repo_token(tokens1)
            token_id = new.token.id
        worker = second.test_client()
        # Created by one worker: works on the other at once.
        assert worker.get(REPO, headers=bearer(new.secret)).status_code == 200
        assert worker.get(REPO, headers=bearer(new.secret)).status_code == 200
        with first.app_context():
            tokens1.revoke_token(token_id)
        assert worker.get(REPO, headers=bearer(new.secret)).status_code == 401
        with second.app_context():
            assert tokens2.get_token(token_id).revoked_at is not None
    finally:
        close(first, db1)
        close(second, db2)


def test_resource_revocation_is_seen_by_a_second_app(database_uri: str) -> None:
    first, db1, tokens1 = make_app(database_uri)
    second, db2, _ = make_app(database_uri)
    try:
        with first.app_context():
            new = tokens1.create_token(name="w", workspace="acme", scopes=["repository"])
        worker = second.test_client()
        assert worker.get(REPO, headers=bearer(new.secret)).status_code == 200
        with first.app_context():
            tokens1.revoke_resource_tokens("acme")
        assert worker.get(REPO, headers=bearer(new.secret)).status_code == 401
    finally:
        close(first, db1)
        close(second, db2)


# -- rotation --------------------------------------------------------------------


def test_rotate_without_grace_retires_the_old_secret(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens
) -> None:
    client = app.test_client()
    old = repo_token(tokens, scopes=["repository:write"])
    token_id = old.token.id
    new = tokens.rotate_token(token_id, rotated_by="alice", grace=timedelta(0))
    assert new is not None
    assert new.token.id == token_id
    assert list(new.token.scopes) == ["repository:write"]
    assert new.secret != old.secret
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200
    # The old secret after its window: reuse, so the whole token is revoked.
    assert client.get(REPO, headers=bearer(old.secret)).status_code == 401
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 401
    db.session.remove()
    record = tokens.get_token(token_id)
    assert record.revoked_at is not None
    assert record.revoked_by == "reuse detection"
    actions = db.session.scalars(
        sa.select(TokenEvent.action).where(TokenEvent.token_id == token_id)
    ).all()
    assert "rotated" in actions and "reused" in actions


def test_rotate_with_grace_keeps_both_secrets_for_the_window(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    old = repo_token(tokens)
    token_id = old.token.id
    new = tokens.rotate_token(token_id, grace=timedelta(minutes=5))
    assert new is not None
    assert client.get(REPO, headers=bearer(old.secret)).status_code == 200
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200

    later = utcnow() + timedelta(minutes=6)
    monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: later)
    assert client.get(REPO, headers=bearer(old.secret)).status_code == 401
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 401
    db.session.remove()
    assert tokens.get_token(token_id).revoked_at is not None


def test_reuse_without_revocation_when_configured(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_REVOKE_ON_REUSE=False)
    try:
        with app.app_context():
            old = repo_token(tokens)
            new = tokens.rotate_token(old.token.id)
            assert new is not None
        client = app.test_client()
        assert client.get(REPO, headers=bearer(old.secret)).status_code == 401
        assert client.get(REPO, headers=bearer(new.secret)).status_code == 200
    finally:
        close(app, db)


def test_rotate_refusals(app: Flask, tokens: AccessTokens) -> None:
    assert tokens.rotate_token("0" * 32) is None
    live = repo_token(tokens)
    with pytest.raises(ValueError):
        tokens.rotate_token(live.token.id, grace=timedelta(minutes=31))
    with pytest.raises(ValueError):
        tokens.rotate_token(live.token.id, grace=timedelta(seconds=-1))
    dead = repo_token(tokens)
    tokens.revoke_token(dead.token.id)
    with pytest.raises(TokenConflict, match="revoked"):
        tokens.rotate_token(dead.token.id)


# -- expiry ------------------------------------------------------------------------


def test_expired_tokens_are_refused(
    app: Flask, tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    new = repo_token(tokens, expires_at=utcnow() + timedelta(hours=1))
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200
    later = utcnow() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: later)
    response = client.get(REPO, headers=bearer(new.secret))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


# -- no secret at rest ---------------------------------------------------------------


def _fragments(secret: str) -> set[str]:
    """The secret, and every piece of it longer than the 4-character hint
    that is not pure prefix."""
    random_part = secret.split("_", 1)[1]
    pieces = {secret, random_part}
    for size in (5,):
        pieces.update(random_part[i : i + size] for i in range(len(random_part) - size + 1))
    return pieces


def test_no_column_holds_the_secret(app: Flask, db: SQLAlchemy, tokens: AccessTokens) -> None:
    client = app.test_client()
    first = repo_token(tokens, created_by="alice")
    first_id = first.token.id
    client.get(REPO, headers=bearer(first.secret))
    client.get("/repositories/acme/lib", headers=bearer(first.secret))  # a failure
    client.get(REPO, headers=bearer(first.secret[:-1] + "x"))  # a typo
    rotated = tokens.rotate_token(first_id, grace=timedelta(minutes=5))
    assert rotated is not None
    client.get(REPO, headers=bearer(rotated.secret))
    other = tokens.create_token(name="w", workspace="acme", scopes=["account"])
    other_id = other.token.id
    tokens.revoke_token(other_id)

    fragments = set()
    for secret in (first.secret, rotated.secret, other.secret):
        fragments |= _fragments(secret)
    inspector = sa.inspect(db.engine)
    tables = inspector.get_table_names()
    assert set(TABLES) <= set(tables)
    cells = 0
    with db.engine.connect() as conn:
        for table in tables:
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                for value in row:
                    text = str(value)
                    cells += 1
                    leaked = [f for f in fragments if f in text]
                    assert not leaked, (table, leaked)
    assert cells > 20

    db.session.remove()
    for token_id in (first_id, other_id):
        record = tokens.get_token(token_id)
        assert record is not None
        for value in vars(record).values():
            assert not any(f in str(value) for f in fragments)
    assert tokens.get_token(first_id).hint == rotated.secret[-4:]


# -- keys ----------------------------------------------------------------------------


def test_tokens_survive_a_secret_key_rotation(database_uri: str) -> None:
    old_app, old_db, old_tokens = make_app(database_uri)
    with old_app.app_context():
        new = repo_token(old_tokens)
    close(old_app, old_db)

    rotated, db, _ = make_app(database_uri)
    rotated.config["SECRET_KEY_FALLBACKS"] = [rotated.config["SECRET_KEY"]]
    rotated.config["SECRET_KEY"] = "a brand new key"
    forgot, forgot_db, _ = make_app(database_uri)
    forgot.config["SECRET_KEY"] = "a brand new key"
    try:
        assert rotated.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200
        # Without the fallback, the old key's digests match nothing.
        assert forgot.test_client().get(REPO, headers=bearer(new.secret)).status_code == 401
        with rotated.app_context():
            fresh = repo_token(current_app.extensions["accesstokens"])
        assert forgot.test_client().get(REPO, headers=bearer(fresh.secret)).status_code == 200
    finally:
        close(rotated, db)
        close(forgot, forgot_db)


def test_digest_keys_setting_takes_precedence(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_DIGEST_KEYS=["digest key"])
    other, other_db, _ = make_app(database_uri)
    try:
        with app.app_context():
            new = repo_token(tokens)
        assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200
        assert other.test_client().get(REPO, headers=bearer(new.secret)).status_code == 401
    finally:
        close(app, db)
        close(other, other_db)


# -- databases -------------------------------------------------------------------------


def test_in_memory_sqlite_works() -> None:
    app, db, tokens = make_app("sqlite://")
    try:
        with app.app_context():
            new = repo_token(tokens)
        assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200
    finally:
        close(app, db)


def test_prefix_setting(tmp_path: Path) -> None:
    app, db, tokens = make_app(f"sqlite:///{tmp_path / 'p.db'}", ACCESSTOKENS_TOKEN_PREFIX="acme")
    try:
        with app.app_context():
            new = repo_token(tokens)
        assert new.secret.startswith("acme_")
        assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200
    finally:
        close(app, db)
    with pytest.raises(ValueError, match="ACCESSTOKENS_TOKEN_PREFIX"):
        make_app(f"sqlite:///{tmp_path / 'q.db'}", ACCESSTOKENS_TOKEN_PREFIX="Bad_Prefix")
