"""The app ``bench_http.py`` serves with gunicorn: the same route bare,
protected, and behind the raw-database floor (``floor.py``). The database URL
comes from ``BENCH_DATABASE_URL``; ``BENCH_POSTGRESQL_CACHE=0`` turns the
PostgreSQL row cache off."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy
from floor import one_statement

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URL"],
        ACCESSTOKENS_API_URL_PREFIX=None,
        # "0" measures the path without the PostgreSQL row cache.
        ACCESSTOKENS_POSTGRESQL_CACHE=os.environ.get("BENCH_POSTGRESQL_CACHE", "1") == "1",
    )
    db = SQLAlchemy(app)
    AccessTokens(app, db=db)

    @app.get("/bare/<workspace>/<repo_slug>")
    def bare(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/protected/<workspace>/<repo_slug>")
    @require_scope("repository")
    def protected(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/floor/<workspace>/<repo_slug>")
    @one_statement(app.config["SQLALCHEMY_DATABASE_URI"], app.config["SECRET_KEY"])
    def floor(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    app.extensions["bench.db"] = db
    return app
