"""The application factory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from . import access  # noqa: F401  (registers the extension's loaders)
from . import api
from . import auth
from . import bitbucket
from . import git_http
from . import pages
from . import settings
from .demo import demo_command
from .extensions import db
from .extensions import tokens
from .seed import seed_demo_command


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. Keys in ``config`` override the defaults, which keep the
    SQLite database (``example.sqlite``), the git repositories (``git/``) and
    the secret key in the instance folder. ``FLASK_*`` environment variables
    are read too, e.g. ``FLASK_SQLALCHEMY_DATABASE_URI``."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI=None,
        GIT_ROOT=os.path.join(app.instance_path, "git"),
        SESSION_COOKIE_SAMESITE="Lax",
        ACCESSTOKENS_API_URL_PREFIX="/2.0",
        ACCESSTOKENS_ADMIN_URL_PREFIX="/admin",
    )
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, exist_ok=True)
        database = os.path.join(app.instance_path, "example.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{database}"
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)

    db.init_app(app)
    tokens.init_app(app, db=db)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(git_http.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(pages.bp)
    app.register_error_handler(HTTPException, bitbucket.handle_http_error)
    app.jinja_env.globals.update(current_user=auth.current_user, csrf_token=auth.csrf_token)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(demo_command)

    with app.app_context():
        db.create_all()
    return app


def instance_secret_key(instance_path: str) -> str:
    """A key made once and kept in the instance folder.

    It must outlive the process: sessions, and the extension's token digests
    when it keys them with it, would break on every restart otherwise.
    """
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key)
        return key
