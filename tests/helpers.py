"""Helpers the tests import: the host app every fixture builds on, and the
``Authorization`` headers a client sends. Fixtures live in ``conftest.py``,
which pytest loads on its own and tests never import."""

from __future__ import annotations

import base64
from typing import Any

from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_any_scope
from flask_accesstokens import require_scope

#: Which project holds each repository, as the host app would know it.
REPOSITORIES = {
    ("acme", "api"): "API",
    ("acme", "lib"): "API",
    ("acme", "web"): "WEB",
    ("hobby", "notes"): "HOB",
}


def make_app(database_uri: str, **config: Any) -> tuple[Flask, SQLAlchemy, AccessTokens]:
    """A small host app. Used by fixtures, and by tests that need a second
    app on the same database (a stand-in for a second worker)."""
    app = Flask(__name__)
    app.config.update(
        {
            "SECRET_KEY": "test secret key",
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "TESTING": True,
            **config,
        }
    )
    db = SQLAlchemy()
    db.init_app(app)
    tokens = AccessTokens(app, db=db)
    projects = dict(REPOSITORIES)
    app.config["TEST_PROJECTS"] = projects

    @tokens.project_loader
    def project_of(workspace: str, repository: str) -> str | None:
        return projects.get((workspace, repository))

    @app.get("/repositories/<workspace>/<repo_slug>")
    @require_scope("repository")
    def repository(workspace: str, repo_slug: str) -> Any:
        return jsonify(token=current_token.id, name=current_token.name)

    @app.post("/repositories/<workspace>/<repo_slug>/push")
    @require_scope("repository:write")
    def push(workspace: str, repo_slug: str) -> Any:
        return jsonify(pushed=True)

    @app.post("/repositories/<workspace>/<repo_slug>/pullrequests")
    @require_scope("pullrequest:write", "pipeline")
    def pullrequest(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/repositories/<workspace>/<repo_slug>/either")
    @require_any_scope("webhook", "runner")
    def either(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/workspaces/<workspace>/projects/<project_key>")
    @require_scope("project")
    def project(workspace: str, project_key: str) -> Any:
        return jsonify(ok=True)

    @app.get("/workspaces/<workspace>/projects/<project_key>/repos/<repo_slug>")
    @require_scope("repository")
    def project_repository(workspace: str, project_key: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/workspaces/<workspace>/members")
    @require_scope("account")
    def members(workspace: str) -> Any:
        return jsonify(ok=True)

    @app.get("/workspaces/<workspace>/repos")
    @require_scope("repository")
    def workspace_repositories(workspace: str) -> Any:
        return jsonify(ok=True)

    @app.get("/workspaces/<workspace>/listing")
    @app.get("/workspaces/<workspace>/projects/<project_key>/listing")
    @require_scope("repository", container=True)
    def listing(workspace: str, project_key: str | None = None) -> Any:
        return jsonify(
            sorted(
                repo
                for (ws, repo), key in projects.items()
                if ws == workspace
                and (project_key is None or key == project_key)
                and current_token.reaches(ws, repository=repo)
            )
        )

    @app.get("/anything")
    @require_scope("repository")
    def unbound() -> Any:
        return jsonify(ok=True)

    @app.get("/optional/<workspace>/<repo_slug>")
    @require_scope("repository", optional=True)
    def optional(workspace: str, repo_slug: str) -> Any:
        return jsonify(token=current_token.id if current_token else None)

    with app.app_context():
        db.create_all()
    return app, db, tokens


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def basic(secret: str, username: str = "x-token-auth") -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}
