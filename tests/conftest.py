"""Fixtures: an app with the extension (``helpers.make_app``: a few protected
routes on every kind of resource), a ``db``, a ``client``. Tests import
helpers from ``helpers``, never from here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import make_app
from services import fresh_schema
from services import require_postgresql

from flask_accesstokens import AccessTokens


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """Every test that uses the app runs on SQLite and on PostgreSQL; the
    PostgreSQL run gets a fresh schema, and skips (saying how to enable it)
    when no server is configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tokens.sqlite'}"
        return
    with fresh_schema(require_postgresql()) as url:
        yield url


@pytest.fixture
def app_parts(database_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    parts = make_app(database_uri)
    yield parts
    with parts[0].app_context():
        AccessTokens.dispose_connections()
        parts[1].engine.dispose()


@pytest.fixture
def app(app_parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> Iterator[Flask]:
    with app_parts[0].app_context():
        yield app_parts[0]


@pytest.fixture
def db(app_parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> SQLAlchemy:
    return app_parts[1]


@pytest.fixture
def tokens(app_parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> AccessTokens:
    return app_parts[2]


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per reason tests were skipped, with how many: "553 skipped"
    alone does not say which service to start (``-rs`` lists every test)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.section("skipped, by reason", sep="-")
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count:5d}  {reason}")
