"""``pipeline``: the order of the checks when several would fail.

Each check alone is tested where its feature is (``test_protect``,
``test_store``, ``test_usage``, ``test_binding``, ``test_scopes``; garbage
never reaching the database in ``test_timing``). Here a token fails more than
one at once, and the reason given to signals and the audit log, and the answer,
must come from the first in the documented order: rotated-out secret, revoked,
expired; then scope; then binding.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import InsufficientScope
from flask_accesstokens import InvalidToken
from flask_accesstokens import token_authenticated
from flask_accesstokens import token_rejected
from flask_accesstokens import token_reused
from flask_accesstokens.models import utcnow

REPO = "/repositories/acme/api"
PUSH = "/repositories/acme/api/push"


class Recorded:
    def __init__(self) -> None:
        self.rejected: list[tuple[str, str | None]] = []
        self.reused: list[dict[str, Any]] = []
        self.authenticated: list[str] = []


@pytest.fixture
def signals(app: Flask) -> Iterator[Recorded]:
    seen = Recorded()

    def rejected(sender: Any, reason: str, token_id: str | None, **kw: Any) -> None:
        seen.rejected.append((reason, token_id))

    def reused(sender: Any, **kw: Any) -> None:
        seen.reused.append(kw)

    def authenticated(sender: Any, token: Any) -> None:
        seen.authenticated.append(token.id)

    with (
        token_rejected.connected_to(rejected, app),
        token_reused.connected_to(reused, app),
        token_authenticated.connected_to(authenticated, app),
    ):
        yield seen


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Move the request path's clock: ``later(minutes=10)``."""

    def move(**delta: float) -> None:
        moment = utcnow() + timedelta(**delta)
        monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: moment)

    return move


def make(tokens: AccessTokens, **values: Any) -> Any:
    fields: dict[str, Any] = {
        "name": "CI",
        "workspace": "acme",
        "repository": "api",
        "scopes": ["repository"],
    }
    fields.update(values)
    return tokens.create_token(**fields)


def status_and_message(response: Any) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["message"]


def test_a_rotated_out_secret_of_a_revoked_token_is_rotated_not_reused(
    app: Flask, tokens: AccessTokens, signals: Recorded
) -> None:
    """Rotated-out comes first, but a token someone already revoked is not
    revoked again nor reported as reused: nothing more leaked than before."""
    old = make(tokens)
    rotated = tokens.rotate_token(old.token.id, grace=timedelta(0))
    assert rotated is not None
    tokens.revoke_token(old.token.id, revoked_by="alice")
    response = app.test_client().get(REPO, headers=bearer(old.secret))
    assert status_and_message(response) == (401, InvalidToken.description)
    assert signals.rejected == [("rotated", old.token.id)]
    assert signals.reused == []
    record = tokens.get_token(old.token.id)
    assert record is not None and record.revoked_by == "alice"


def test_a_rotated_out_secret_of_an_expired_token_is_rotated(
    app: Flask, tokens: AccessTokens, signals: Recorded, later: Any
) -> None:
    old = make(tokens, expires_at=utcnow() + timedelta(minutes=2))
    assert tokens.rotate_token(old.token.id, grace=timedelta(minutes=1)) is not None
    later(minutes=5)
    assert app.test_client().get(REPO, headers=bearer(old.secret)).status_code == 401
    assert signals.rejected == [("rotated", old.token.id)]


def test_revoked_comes_before_expired(
    app: Flask, tokens: AccessTokens, signals: Recorded, later: Any
) -> None:
    new = make(tokens, expires_at=utcnow() + timedelta(minutes=2))
    tokens.revoke_token(new.token.id)
    later(minutes=5)
    assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 401
    assert signals.rejected == [("revoked", new.token.id)]


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_the_tokens_own_state_comes_before_its_scope(
    app: Flask, tokens: AccessTokens, signals: Recorded, later: Any, state: str
) -> None:
    """A dead token that also lacks the scope is a 401: telling the client
    which scope to ask for would say the token was once good."""
    new = make(tokens, expires_at=utcnow() + timedelta(minutes=2))
    if state == "revoked":
        tokens.revoke_token(new.token.id)
    else:
        later(minutes=5)
    response = app.test_client().post(PUSH, headers=bearer(new.secret))
    assert status_and_message(response) == (401, InvalidToken.description)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert signals.rejected == [(state, new.token.id)]


def test_scope_comes_before_binding(app: Flask, tokens: AccessTokens, signals: Recorded) -> None:
    """Bound elsewhere and lacking the scope: the answer is about the scope,
    the one thing the client can learn from its own token anyway."""
    elsewhere = make(tokens, repository="web")
    response = app.test_client().post(PUSH, headers=bearer(elsewhere.secret))
    assert status_and_message(response) == (403, InsufficientScope.description)
    assert response.get_json()["error"]["detail"] == {
        "reason": "insufficient_scope",
        "required": ["repository:write"],
        "granted": ["repository"],
    }
    assert signals.rejected == [("insufficient_scope", elsewhere.token.id)]


def test_binding_is_checked_once_the_scope_is_there(
    app: Flask, tokens: AccessTokens, signals: Recorded
) -> None:
    elsewhere = make(tokens, repository="web", scopes=["repository:write"])
    response = app.test_client().post(PUSH, headers=bearer(elsewhere.secret))
    assert status_and_message(response) == (
        403,
        "This access token is not for this repository.",
    )
    assert response.get_json()["error"]["detail"] == {"reason": "wrong_resource"}
    assert signals.rejected == [("wrong_resource", elsewhere.token.id)]


def test_only_a_request_that_passes_every_check_is_authenticated(
    app: Flask, tokens: AccessTokens, signals: Recorded
) -> None:
    here = make(tokens)
    elsewhere = make(tokens, repository="web", scopes=["repository:write"])
    client = app.test_client()
    assert client.post(PUSH, headers=bearer(here.secret)).status_code == 403  # scope
    assert client.post(PUSH, headers=bearer(elsewhere.secret)).status_code == 403  # binding
    assert signals.authenticated == []
    assert client.get(REPO, headers=bearer(here.secret)).status_code == 200
    assert signals.authenticated == [here.token.id]
    assert [reason for reason, _ in signals.rejected] == ["insufficient_scope", "wrong_resource"]
