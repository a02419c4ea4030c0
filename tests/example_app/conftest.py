"""Fixtures for the example app tests: a seeded app on its own SQLite file and
git root, a test client, a token factory, and a live server for the git
binary. (Tests import nothing from a conftest, so this one may sit beside the
root one.)"""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from example_app import create_app
from example_app.extensions import db
from example_app.extensions import tokens
from example_app.seed import seed_demo
from flask_accesstokens import AccessTokens

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]


def app_config(folder: Path) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "example app test key",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'example.sqlite'}",
        "GIT_ROOT": str(folder / "git"),
    }


def close(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        AccessTokens.dispose_connections()
        db.engine.dispose()


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded once (password hashing and git are slow); each test gets a copy."""
    folder = tmp_path_factory.mktemp("seeded")
    app = create_app(app_config(folder))
    with app.app_context():
        seed_demo()
    close(app)
    return folder


@pytest.fixture
def host_app(seeded_template: Path, tmp_path: Path) -> Iterator[Flask]:
    folder = tmp_path / "host"
    shutil.copytree(seeded_template, folder)
    app = create_app(app_config(folder))
    yield app
    close(app)


@pytest.fixture
def host_client(host_app: Flask) -> FlaskClient:
    return host_app.test_client()


@pytest.fixture
def mint(host_app: Flask) -> Mint:
    """``mint("repository", repository="api")`` -> a token secret on workspace acme."""

    def make(*scopes: str, workspace: str = "acme", name: str = "CI", **bound: str) -> str:
        with host_app.app_context():
            new = tokens.create_token(
                name=name, workspace=workspace, scopes=list(scopes), created_by="alice", **bound
            )
            return new.secret

    return make


@pytest.fixture
def token_id(host_app: Flask) -> Callable[[str], str]:
    """The id of the token with this name (the secret is never searchable)."""

    def find(name: str, workspace: str = "acme", **bound: str) -> str:
        with host_app.app_context():
            matches = [t for t in tokens.list_tokens(workspace, **bound) if t.name == name]
            assert len(matches) == 1
            return matches[0].id

    return find


@pytest.fixture
def bearer() -> Headers:
    return lambda secret: {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def basic() -> Headers:
    def headers(secret: str) -> dict[str, str]:
        raw = base64.b64encode(f"x-token-auth:{secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    return headers


def form_csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a page renders into its forms, as a browser would send it."""
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, f"{path} renders no CSRF token"
    return found.group(1)


@pytest.fixture
def login(host_client: FlaskClient) -> Callable[[str], None]:
    """Sign in through the login form, as a browser would."""

    def sign_in(username: str, password: str = "demo") -> None:
        response = host_client.post(
            "/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": form_csrf_token(host_client),
            },
        )
        assert response.status_code == 302, response.text

    return sign_in


@pytest.fixture
def csrf(host_client: FlaskClient) -> Callable[[], str]:
    def current() -> str:
        """The form token of the session, as a page the user just opened would carry."""
        return form_csrf_token(host_client)

    return current


@pytest.fixture
def live_server(host_app: Flask) -> Iterator[str]:
    """The app on a real socket, for the git binary. Yields its base URL."""
    server = make_server("127.0.0.1", 0, host_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    """git with no user or system config, no prompts, and a known identity."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Test Pusher",
        "GIT_AUTHOR_EMAIL": "pusher@example.invalid",
        "GIT_COMMITTER_NAME": "Test Pusher",
        "GIT_COMMITTER_EMAIL": "pusher@example.invalid",
    }
