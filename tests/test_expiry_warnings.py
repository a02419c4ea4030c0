"""``notify_expiring``: each threshold at most once, remembered in the
database, ``token_expired`` once after expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import token_expired
from flask_accesstokens import token_expiring
from flask_accesstokens.models import TokenNotice
from flask_accesstokens.models import utcnow


@pytest.fixture
def received(app: Flask) -> Iterator[list[tuple[str, str, int | None]]]:
    seen: list[tuple[str, str, int | None]] = []

    def expiring(sender: Any, token: Any, days_left: int) -> None:
        seen.append(("expiring", token.id, days_left))

    def expired(sender: Any, token: Any) -> None:
        seen.append(("expired", token.id, None))

    token_expiring.connect(expiring, app)
    token_expired.connect(expired, app)
    yield seen
    token_expiring.disconnect(expiring, app)
    token_expired.disconnect(expired, app)


def _token(tokens: AccessTokens, expires_at: datetime | None, name: str = "CI") -> str:
    new = tokens.create_token(
        name=name, workspace="acme", repository="api", scopes=["repository"], expires_at=expires_at
    )
    return new.token.id


def test_each_threshold_once_then_expired(
    tokens: AccessTokens, received: list[Any], db: SQLAlchemy
) -> None:
    now = utcnow()
    token_id = _token(tokens, now + timedelta(days=40))
    assert tokens.notify_expiring(now) == 0
    assert tokens.notify_expiring(now + timedelta(days=11)) == 1  # 29 days left
    assert tokens.notify_expiring(now + timedelta(days=12)) == 0
    assert tokens.notify_expiring(now + timedelta(days=34)) == 1  # 6 days left
    assert tokens.notify_expiring(now + timedelta(days=39, hours=1)) == 1  # <1 day left
    assert tokens.notify_expiring(now + timedelta(days=39, hours=2)) == 0
    assert tokens.notify_expiring(now + timedelta(days=41)) == 1
    assert tokens.notify_expiring(now + timedelta(days=400)) == 0
    assert received == [
        ("expiring", token_id, 30),
        ("expiring", token_id, 7),
        ("expiring", token_id, 1),
        ("expired", token_id, None),
    ]
    kinds = set(db.session.scalars(sa.select(TokenNotice.kind)))
    assert kinds == {"expiring:30", "expiring:7", "expiring:1", "expired"}


def test_only_the_smallest_when_several_are_crossed(
    tokens: AccessTokens, received: list[Any]
) -> None:
    now = utcnow()
    token_id = _token(tokens, now + timedelta(days=3))
    assert tokens.notify_expiring(now) == 1
    assert received == [("expiring", token_id, 7)]
    assert tokens.notify_expiring(now + timedelta(days=2, hours=12)) == 1
    assert received[-1] == ("expiring", token_id, 1)


def test_already_expired_gets_only_expired(
    app: Flask, tokens: AccessTokens, received: list[Any]
) -> None:
    now = utcnow()
    token_id = _token(tokens, now + timedelta(hours=1))
    assert tokens.notify_expiring(now + timedelta(days=5)) == 1
    assert received == [("expired", token_id, None)]
    assert tokens.notify_expiring(now + timedelta(days=6)) == 0


def test_revoked_and_unexpiring_tokens_get_nothing(
    tokens: AccessTokens, received: list[Any]
) -> None:
    now = utcnow()
    _token(tokens, None, "forever")
    revoked = _token(tokens, now + timedelta(days=2), "revoked")
    tokens.revoke_token(revoked)
    assert tokens.notify_expiring(now) == 0
    assert tokens.notify_expiring(now + timedelta(days=3)) == 0
    assert received == []


def test_many_tokens_counted(tokens: AccessTokens, received: list[Any]) -> None:
    now = utcnow()
    ids = [_token(tokens, now + timedelta(days=d), f"t{d}") for d in (1, 5, 20, 60)]
    assert tokens.notify_expiring(now + timedelta(hours=1)) == 3
    assert sorted(r[1:] for r in received) == sorted([(ids[0], 1), (ids[1], 7), (ids[2], 30)])


def test_a_claimed_notice_is_not_sent_again(
    tokens: AccessTokens, received: list[Any], db: SQLAlchemy
) -> None:
    """Another run (another cron host) inserted the notice first: the unique
    key stops this one from sending it."""
    now = utcnow()
    token_id = _token(tokens, now + timedelta(days=3))
    db.session.add(TokenNotice(token_id=token_id, kind="expiring:7", sent_at=now))
    db.session.commit()
    assert tokens.notify_expiring(now) == 0
    assert received == []
    service = AccessTokens.service()
    assert service._claim_notice(token_id, "expiring:7", now) is False  # noqa: SLF001


def test_settings_choose_the_thresholds(database_uri: str) -> None:
    from helpers import make_app

    app, db, tokens = make_app(database_uri, ACCESSTOKENS_EXPIRY_WARNINGS=[14])
    got: list[int] = []

    def expiring(sender: Any, token: Any, days_left: int) -> None:
        got.append(days_left)

    token_expiring.connect(expiring, app)
    try:
        with app.app_context():
            now = utcnow()
            _token(tokens, now + timedelta(days=10))
            assert tokens.notify_expiring(now) == 1
        assert got == [14]
    finally:
        token_expiring.disconnect(expiring, app)
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_cli_and_prune(app: Flask, tokens: AccessTokens, received: list[Any]) -> None:
    now = utcnow()
    token_id = _token(tokens, now + timedelta(days=2))
    result: Result = app.test_cli_runner().invoke(args=["access-tokens", "notify-expiring"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Sent 1 expiry notice."
    result = app.test_cli_runner().invoke(args=["access-tokens", "notify-expiring"])
    assert result.output.strip() == "Sent 0 expiry notices."
    tokens.revoke_token(token_id)
    from flask_accesstokens.models import AccessToken

    record = tokens.get_token(token_id)
    assert record is not None
    record.revoked_at = now - timedelta(days=10)
    AccessTokens.service().session.commit()
    assert [t.id for t in tokens.prune_tokens(timedelta(days=1))] == [token_id]
    session = AccessTokens.service().session
    assert session.scalar(sa.select(sa.func.count()).select_from(TokenNotice)) == 0
    assert session.get(AccessToken, token_id) is None
