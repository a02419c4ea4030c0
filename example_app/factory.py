"""The application factory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import timezone
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import api
from . import auth
from . import errorpages
from . import git_http
from . import inputs
from . import notices
from . import pages
from . import settings
from . import signin
from .access import register_token_callbacks
from .demo import demo_command
from .extensions import csrf
from .extensions import db
from .extensions import tokens
from .git_http import GIT_MAX_FETCH_REQUEST
from .git_http import GIT_MAX_PUSH_REQUEST
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
        GIT_MAX_FETCH_REQUEST=GIT_MAX_FETCH_REQUEST,
        GIT_MAX_PUSH_REQUEST=GIT_MAX_PUSH_REQUEST,
        # Every body but git's (which sets its own limit per request).
        MAX_CONTENT_LENGTH=inputs.MAX_BODY,
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
    signin.init_app(app)
    register_token_callbacks(tokens)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(git_http.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(pages.bp)
    notices.init_app(app)
    app.register_error_handler(HTTPException, errorpages.handle_http_error)
    app.jinja_env.globals.update(current_user=auth.current_user, utc=timezone.utc)
    app.after_request(refuse_framing)

    # Before CSRFProtect's own check, which runs in registration order.
    app.before_request(auth.refuse_access_tokens)
    inputs.init_app(app)  # first of all hooks: a bad query string is a 400
    csrf.init_app(app)
    # Not cookie-authenticated forms: the 2.0 API and git take tokens, and the
    # extension's JSON API accepts only JSON bodies, which a cross-site form
    # cannot send (a browser would ask CORS first).
    csrf.exempt(api.bp)
    csrf.exempt(git_http.bp)
    if "accesstokens_api" in app.blueprints:
        csrf.exempt(app.blueprints["accesstokens_api"])

    app.cli.add_command(seed_demo_command)
    app.cli.add_command(demo_command)

    with app.app_context():
        db.create_all()
    return app


def refuse_framing(response: Response) -> Response:
    """No other site may frame a page of this app: a one-click delete form in
    a hidden frame is a clickjacking target. Same-site frames stay allowed, as
    the extension's admin pages allow them (``SAMEORIGIN``)."""
    if response.mimetype == "text/html":
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        policy = response.headers.get("Content-Security-Policy")
        if policy is None:
            response.headers["Content-Security-Policy"] = "frame-ancestors 'self'"
        elif "frame-ancestors" not in policy:
            response.headers["Content-Security-Policy"] = f"{policy}; frame-ancestors 'self'"
    return response


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
