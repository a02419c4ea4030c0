"""The application factory. SQLite in the instance folder by default;
``FLASK_*`` environment variables and ``config`` override any key."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from . import auth
from . import views
from .access import tokens
from .demo import demo_command
from .demo import seed_command
from .models import db

csrf = CSRFProtect()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI=None,
        # The management JSON API is at /api (the default), the admin
        # pages at /settings/organizations/<org>/projects/<p>/access-tokens.
        ACCESSTOKENS_ADMIN_URL_PREFIX="/settings",
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, exist_ok=True)
        database = os.path.join(app.instance_path, "saas.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{database}"
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)

    db.init_app(app)
    tokens.init_app(app, db=db)
    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    csrf.init_app(app)
    # Token-authenticated JSON, not cookie-authenticated forms; the
    # extension's JSON API takes only JSON bodies, which no cross-site form
    # can send.
    csrf.exempt(views.bp)
    csrf.exempt(app.blueprints["accesstokens_api"])
    app.cli.add_command(seed_command)
    app.cli.add_command(demo_command)
    with app.app_context():
        db.create_all()  # a real app runs its migrations instead
    return app


def instance_secret_key(folder: str) -> str:
    """A random key made once and kept in the instance folder, so sessions
    and token digests survive a restart."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "saas_secret_key")
    if not os.path.exists(path):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    with open(path) as file:
        return file.read().strip()
