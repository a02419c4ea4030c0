"""``models``: aware UTC datetimes in and out on every database, scopes in
one column, a token's state, and no column that can hold a secret."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import StatementError

from flask_accesstokens import tokenformat
from flask_accesstokens.models import AccessToken
from flask_accesstokens.models import as_utc
from flask_accesstokens.models import Base
from flask_accesstokens.models import ScopeList
from flask_accesstokens.models import UTCDateTime
from flask_accesstokens.models import utcnow

PLUS_TWO = timezone(timedelta(hours=2))


def record(**values: Any) -> AccessToken:
    fields: dict[str, Any] = {
        "id": tokenformat.new_id(),
        "name": "CI",
        "type": "repository",
        "resource_key": "workspace=acme/repository=api",
        "scopes": ("repository",),
        "hint": "abcd",
    }
    fields.update(values)
    return AccessToken(**fields)


def reread(db: SQLAlchemy, token: AccessToken) -> AccessToken:
    db.session.add(token)
    db.session.commit()
    token_id = token.id
    db.session.expunge_all()
    found = db.session.get(AccessToken, token_id)
    assert found is not None
    return found


# -- UTCDateTime -----------------------------------------------------------------------


def test_aware_datetimes_come_back_aware_utc_and_equal(app: Flask, db: SQLAlchemy) -> None:
    local = datetime(2031, 5, 4, 14, 30, 15, 123456, tzinfo=PLUS_TWO)
    found = reread(db, record(expires_at=local))
    assert found.expires_at == local
    assert found.expires_at is not None and found.expires_at.tzinfo == timezone.utc
    assert found.expires_at.hour == 12
    assert found.created_at.tzinfo == timezone.utc  # the default, utcnow()


def test_naive_datetimes_are_refused_not_guessed(app: Flask, db: SQLAlchemy) -> None:
    db.session.add(record(expires_at=datetime(2031, 5, 4, 12, 0)))
    with pytest.raises(StatementError) as raised:
        db.session.commit()
    assert isinstance(raised.value.orig, ValueError)
    assert "timezone-aware" in str(raised.value.orig)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AccessToken)) == 0


def test_utc_datetime_stores_naive_utc() -> None:
    """What the column holds: naive UTC, so every database compares alike."""
    column = UTCDateTime()
    dialect = sa.create_engine("sqlite://").dialect
    stored = column.process_bind_param(datetime(2031, 1, 1, 1, 0, tzinfo=PLUS_TWO), dialect)
    assert stored == datetime(2030, 12, 31, 23, 0)
    assert stored is not None and stored.tzinfo is None
    assert column.process_bind_param(None, dialect) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        column.process_bind_param(datetime(2031, 1, 1), dialect)


@pytest.mark.parametrize(
    "raw",
    [
        datetime(2030, 12, 31, 23, 0),
        datetime(2030, 12, 31, 23, 0, tzinfo=timezone.utc),
        datetime(2031, 1, 1, 1, 0, tzinfo=PLUS_TWO),
        "2030-12-31 23:00:00",
        "2030-12-31T23:00:00",
    ],
)
def test_as_utc_reads_what_drivers_return(raw: Any) -> None:
    value = as_utc(raw)
    assert value == datetime(2030, 12, 31, 23, 0, tzinfo=timezone.utc)
    assert value is not None and value.tzinfo == timezone.utc


def test_as_utc_keeps_none() -> None:
    assert as_utc(None) is None


def test_utcnow_is_aware() -> None:
    assert utcnow().tzinfo == timezone.utc


# -- ScopeList -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scopes",
    [(), ("repository",), ("repository:write", "pullrequest", "pipeline:variable")],
)
def test_scopes_round_trip_in_order(app: Flask, db: SQLAlchemy, scopes: tuple[str, ...]) -> None:
    assert reread(db, record(scopes=list(scopes))).scopes == scopes


def test_scopes_are_one_space_separated_column(app: Flask, db: SQLAlchemy) -> None:
    token = reread(db, record(scopes=["repository:write", "pipeline"]))
    raw = db.session.execute(
        sa.text("SELECT scopes FROM accesstokens_token WHERE id = :id"), {"id": token.id}
    ).scalar()
    assert raw == "repository:write pipeline"


def test_scope_list_keeps_none() -> None:
    column = ScopeList()
    dialect = sa.create_engine("sqlite://").dialect
    assert column.process_bind_param(None, dialect) is None
    assert column.process_result_value(None, dialect) is None


# -- state -----------------------------------------------------------------------------


def test_state_active_revoked_expired() -> None:
    now = utcnow()
    assert record().state == "active"
    assert record(expires_at=now + timedelta(hours=1)).state == "active"
    assert record(expires_at=now - timedelta(seconds=1)).state == "expired"
    assert record(revoked_at=now).state == "revoked"
    # Revoked is what someone did, so it wins over expiry.
    assert record(revoked_at=now, expires_at=now - timedelta(days=1)).state == "revoked"


def test_is_active_and_is_expired() -> None:
    now = utcnow()
    assert record().is_active and not record().is_expired
    expired = record(expires_at=now - timedelta(seconds=1))
    assert expired.is_expired and not expired.is_active
    revoked = record(revoked_at=now)
    assert not revoked.is_active and not revoked.is_expired


def test_expiry_is_inclusive_of_the_instant() -> None:
    """At ``expires_at`` the token is already expired, as the request path decides."""
    at = utcnow()
    assert record(expires_at=at).is_expired


def test_repr_shows_no_secret_material() -> None:
    token = record(hint="wxyz")
    assert repr(token) == f"<AccessToken {token.id} repository 'CI'>"


# -- no secret at rest -----------------------------------------------------------------

#: Every column of every table. A new column must be checked to hold no secret
#: (nor anything a secret can be recovered from) before it is added here.
COLUMNS = {
    "accesstokens_token": {
        "id", "name", "type", "resource", "scopes", "hint",
        "created_at", "created_by", "last_used_at", "last_used_ip", "revoked_at",
        "revoked_by", "expires_at", "rotated_at", "generation",
        # 0.2: addresses and networks (not secrets), canary flag, where a leak was reported
        "allowed_ips", "recent_ips", "recent_clients", "new_clients_since",
        "new_clients_count", "canary", "leak_provider", "leak_url", "usage_since",
        # 0.3: the trust policy that minted it (an id, not a secret)
        "policy_id",
    },
    # 0.3: trust policies (claims are public facts about CI jobs) and the
    # digests of exchanged ID tokens' ids (replay keys, not the tokens)
    "accesstokens_trust_policy": {
        "id", "type", "resource", "issuer", "claims", "scopes",
        "lifetime_seconds", "created_at", "created_by",
    },
    "accesstokens_oidc_replay": {"key", "expires_at"},
    "accesstokens_notice": {"id", "token_id", "kind", "sent_at"},
    "accesstokens_scope_use": {"token_id", "scope", "last_needed"},
    "accesstokens_resource_use": {"token_id", "resource", "last_used"},
    "accesstokens_secret": {"digest", "token_id", "created_at", "valid_until"},
    "accesstokens_event": {
        "id", "at", "action", "token_id", "actor", "client", "resource", "count", "detail",
    },
}  # fmt: skip


def test_the_tables_have_exactly_the_reviewed_columns() -> None:
    assert {t.name: {c.name for c in t.columns} for t in Base.metadata.sorted_tables} == COLUMNS


def test_the_hint_column_cannot_hold_a_secret() -> None:
    secret = tokenformat.generate("bbat")
    hint = AccessToken.__table__.c.hint  # type: ignore[attr-defined]
    assert hint.type.length < len(secret) - len("bbat_")
    assert len(tokenformat.hint(secret)) <= hint.type.length


def test_the_digest_column_holds_a_keyed_digest_not_the_secret() -> None:
    secret = tokenformat.generate("bbat")
    digest = tokenformat.Digester(["key"]).digest(secret)
    column = Base.metadata.tables["accesstokens_secret"].c.digest
    assert len(digest) == column.type.length
    assert set(digest) <= set("0123456789abcdef")
