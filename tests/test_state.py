"""``state``: one app's settings and digest keys, and the callbacks an
extension shares with every app it serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import tokenformat
from flask_accesstokens.state import app_state
from flask_accesstokens.state import AppState
from flask_accesstokens.state import EXTENSION_KEY
from flask_accesstokens.state import STATE_KEY
from flask_accesstokens.tokenformat import Digester

SECRET = tokenformat.generate("bbat")


def bare_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "init", **config})
    return app


@pytest.fixture
def made() -> Iterator[tuple[Flask, AccessTokens]]:
    """An app with the extension, its ``SECRET_KEY`` not used yet."""
    app = bare_app()
    db = SQLAlchemy(app)
    tokens = AccessTokens(app, db=db)
    yield app, tokens
    with app.app_context():
        db.engine.dispose()


def test_init_app_puts_the_state_on_the_app(made: tuple[Flask, AccessTokens]) -> None:
    app, tokens = made
    state = app.extensions[STATE_KEY]
    assert isinstance(state, AppState)
    assert app.extensions[EXTENSION_KEY] is tokens
    assert state.app is app
    assert state.catalog is tokens.scopes
    assert app_state(app) is state
    with app.app_context():
        assert app_state() is state


def test_app_state_without_init_app_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"init_app\(\) was not called"):
        app_state(Flask(__name__))


# -- digest keys -----------------------------------------------------------------------


def test_digest_keys_come_from_secret_key_when_first_used(
    made: tuple[Flask, AccessTokens],
) -> None:
    app, _ = made
    state = app_state(app)
    app.config["SECRET_KEY"] = "set after init_app"
    assert state.digester.candidates(SECRET) == Digester(["set after init_app"]).candidates(SECRET)


def test_secret_key_fallbacks_verify_old_tokens(made: tuple[Flask, AccessTokens]) -> None:
    app, _ = made
    app.config["SECRET_KEY"] = "new"
    app.config["SECRET_KEY_FALLBACKS"] = ["old", "", "older"]  # empty ones are skipped
    candidates = app_state(app).digester.candidates(SECRET)
    assert candidates == Digester(["new", "old", "older"]).candidates(SECRET)
    assert app_state(app).digester.digest(SECRET) == Digester(["new"]).digest(SECRET)


def test_the_keys_are_resolved_once(made: tuple[Flask, AccessTokens]) -> None:
    """Changing SECRET_KEY on a serving app does not silently invalidate every
    token mid-flight: the keys are those of the first use."""
    app, _ = made
    app.config["SECRET_KEY"] = "first"
    before = app_state(app).digester.digest(SECRET)
    app.config["SECRET_KEY"] = "second"
    assert app_state(app).digester.digest(SECRET) == before


def test_digest_keys_setting_wins_over_secret_key() -> None:
    app = bare_app(SECRET_KEY="app key", ACCESSTOKENS_DIGEST_KEYS=["digest new", "digest old"])
    db = SQLAlchemy(app)
    AccessTokens(app, db=db)
    candidates = app_state(app).digester.candidates(SECRET)
    assert candidates == Digester(["digest new", "digest old"]).candidates(SECRET)
    assert Digester(["app key"]).digest(SECRET) not in candidates


def test_a_key_removed_after_init_app_fails_on_first_use_saying_what_is_missing(
    made: tuple[Flask, AccessTokens],
) -> None:
    app, _ = made
    app.config["SECRET_KEY"] = None
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        app_state(app).digester  # noqa: B018 - the property is the test


# -- callbacks -------------------------------------------------------------------------


def test_callbacks_are_shared_by_every_app_of_an_extension() -> None:
    tokens = AccessTokens()
    first, second = bare_app(), bare_app()
    tokens.init_app(first, db=SQLAlchemy(first))
    tokens.init_app(second, db=SQLAlchemy(second))

    @tokens.project_loader  # registered after init_app: both apps see it
    def project_of(workspace: str, repository: str) -> str:
        return "API"

    assert app_state(first).callbacks is app_state(second).callbacks
    loader = app_state(first).callbacks.parent_loader  # project_loader, as the model's
    assert loader is not None
    assert loader(Resource.of("acme", None, "api")) == "API"
    assert app_state(first) is not app_state(second)


def test_another_extension_has_callbacks_of_its_own() -> None:
    one, other = AccessTokens(), AccessTokens()
    first, second = bare_app(), bare_app()
    one.init_app(first, db=SQLAlchemy(first))
    other.init_app(second, db=SQLAlchemy(second))
    one.manager_loader(lambda resource: "alice")
    assert app_state(first).callbacks.manager_loader is not None
    assert app_state(second).callbacks.manager_loader is None


def test_call_runs_sync_and_async_callbacks(made: tuple[Flask, AccessTokens]) -> None:
    pytest.importorskip("asgiref", reason="async callbacks need flask[async]")
    app, _ = made
    state = app_state(app)

    async def async_loader(workspace: str, repository: str) -> str:
        return f"{workspace}/{repository}"

    with app.app_context():
        assert state.call(lambda a, b: a + b, "x", "y") == "xy"
        assert state.call(async_loader, "acme", "api") == "acme/api"
