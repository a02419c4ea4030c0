"""The binding check: a token reaches the resource it is bound to and the
ones below it, nothing else, and a resource that does not exist gets the same
answer as someone else's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope


def _extra_routes(app: Flask) -> None:
    """Routes whose required scope every token type may hold, so a 403 here
    can only come from the binding check."""

    @app.get("/b/workspaces/<workspace>/projects/<project_key>/settings")
    @require_scope("repository")
    def project_settings(workspace: str, project_key: str) -> Any:
        return jsonify(ok=True)

    @app.get("/b/noargs")
    @require_scope("repository")
    def no_args() -> Any:
        return jsonify(ok=True)

    @app.get("/b/other/<name>")
    @require_scope("repository")
    def other_args(name: str) -> Any:
        return jsonify(ok=True)

    @app.get("/b/repo-only/<repo_slug>")
    @require_scope("repository")
    def repo_without_workspace(repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/b/int/<workspace>/<int:repo_slug>")
    @require_scope("repository")
    def int_repo(workspace: str, repo_slug: int) -> Any:
        return jsonify(ok=True)


@pytest.fixture
def tokens_by_type(app: Flask, tokens: AccessTokens) -> dict[str, str]:
    _extra_routes(app)
    create = tokens.create_token
    return {
        "repository": create(
            name="r", workspace="acme", repository="api", scopes=["repository"]
        ).secret,
        "project": create(name="p", workspace="acme", project="API", scopes=["project"]).secret,
        "workspace": create(name="w", workspace="acme", scopes=["project", "account"]).secret,
    }


def repo(ws: str, slug: str) -> str:
    return f"/repositories/{ws}/{slug}"


def project(ws: str, key: str) -> str:
    return f"/b/workspaces/{ws}/projects/{key}/settings"


def project_repo(ws: str, key: str, slug: str) -> str:
    return f"/workspaces/{ws}/projects/{key}/repos/{slug}"


def workspace(ws: str) -> str:
    return f"/workspaces/{ws}/repos"


NO_RESOURCE = ["/b/noargs", "/b/other/acme", "/b/repo-only/api", "/anything"]

CASES: dict[str, list[tuple[str, int]]] = {
    "repository": [
        (repo("acme", "api"), 200),
        (repo("acme", "lib"), 403),  # same project, another repository
        (repo("acme", "web"), 403),
        (repo("acme", "ghost"), 403),  # does not exist
        (repo("hobby", "api"), 403),  # same slug, another workspace
        (repo("hobby", "notes"), 403),
        (project_repo("acme", "API", "api"), 200),
        (project_repo("acme", "API", "lib"), 403),
        (project("acme", "API"), 403),  # its own project: still denied
        (project("acme", "WEB"), 403),
        (workspace("acme"), 403),  # its own workspace: still denied
        (workspace("hobby"), 403),
        ("/b/int/acme/1", 403),
        *((url, 403) for url in NO_RESOURCE),
    ],
    "project": [
        (repo("acme", "api"), 200),
        (repo("acme", "lib"), 200),
        (repo("acme", "web"), 403),  # outside the token's project
        (repo("acme", "ghost"), 403),
        (repo("hobby", "notes"), 403),
        (repo("hobby", "api"), 403),
        (project("acme", "API"), 200),
        (project("acme", "WEB"), 403),
        (project("acme", "GHOST"), 403),
        (project("hobby", "API"), 403),
        (project("hobby", "HOB"), 403),
        (project_repo("acme", "API", "api"), 200),
        (project_repo("acme", "API", "web"), 403),  # URL lies: web is in WEB
        (project_repo("acme", "WEB", "api"), 403),  # URL names another project
        (project_repo("acme", "WEB", "web"), 403),
        (workspace("acme"), 403),
        (workspace("hobby"), 403),
        ("/workspaces/acme/projects/API", 200),  # the helpers route wants "project"
        ("/b/int/acme/1", 403),
        *((url, 403) for url in NO_RESOURCE),
    ],
    "workspace": [
        (repo("acme", "api"), 200),
        (repo("acme", "web"), 200),
        (repo("hobby", "notes"), 403),
        (repo("ghostws", "api"), 403),
        (project("acme", "API"), 200),
        (project("acme", "WEB"), 200),
        (project("hobby", "HOB"), 403),
        (project_repo("acme", "WEB", "web"), 200),
        (project_repo("hobby", "HOB", "notes"), 403),
        (workspace("acme"), 200),
        (workspace("hobby"), 403),
        (workspace("ghostws"), 403),
        ("/workspaces/acme/members", 200),
        ("/workspaces/hobby/members", 403),
        *((url, 403) for url in NO_RESOURCE),
    ],
}


@pytest.mark.parametrize("token_type", list(CASES))
def test_binding(client: Any, tokens_by_type: dict[str, str], token_type: str) -> None:
    secret = tokens_by_type[token_type]
    for url, status in CASES[token_type]:
        response = client.get(url, headers=bearer(secret))
        assert response.status_code == status, (token_type, url)
        if status == 403:
            assert response.headers["WWW-Authenticate"].startswith(
                'Bearer realm="api", error="insufficient_scope"'
            ), url
            error = response.get_json()["error"]
            assert error["message"].startswith("This access token is not for this "), url
            assert error["detail"] == {"reason": "wrong_resource"}, url


def _answer(response: Any) -> tuple[Any, ...]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "Date")
    return response.status_code, headers, response.get_data()


@pytest.mark.parametrize(
    ("token_type", "existing", "missing"),
    [
        ("repository", repo("acme", "lib"), repo("acme", "ghost")),
        ("repository", repo("acme", "lib"), repo("ghostws", "api")),
        ("repository", project("acme", "API"), project("acme", "GHOST")),
        ("project", repo("acme", "web"), repo("acme", "ghost")),
        ("project", repo("hobby", "notes"), repo("ghostws", "ghost")),
        ("project", project("acme", "WEB"), project("acme", "GHOST")),
        ("project", project_repo("acme", "WEB", "web"), project_repo("acme", "GHOST", "x")),
        ("workspace", workspace("hobby"), workspace("ghostws")),
        ("workspace", repo("hobby", "notes"), repo("ghostws", "ghost")),
    ],
)
def test_missing_resources_get_the_same_answer_as_someone_elses(
    client: Any, tokens_by_type: dict[str, str], token_type: str, existing: str, missing: str
) -> None:
    secret = tokens_by_type[token_type]
    first = _answer(client.get(existing, headers=bearer(secret)))
    assert first[0] == 403
    assert _answer(client.get(missing, headers=bearer(secret))) == first


def test_project_token_follows_a_repository_moved_between_projects(
    app: Flask, client: Any, tokens_by_type: dict[str, str]
) -> None:
    secret = tokens_by_type["project"]
    projects = app.config["TEST_PROJECTS"]
    assert client.get(repo("acme", "web"), headers=bearer(secret)).status_code == 403
    projects[("acme", "web")] = "API"
    assert client.get(repo("acme", "web"), headers=bearer(secret)).status_code == 200
    projects[("acme", "api")] = "WEB"
    assert client.get(repo("acme", "api"), headers=bearer(secret)).status_code == 403
    del projects[("acme", "lib")]  # deleted
    assert client.get(repo("acme", "lib"), headers=bearer(secret)).status_code == 403


def test_project_token_reaches_repositories_added_later(
    app: Flask, client: Any, tokens_by_type: dict[str, str]
) -> None:
    secret = tokens_by_type["project"]
    assert client.get(repo("acme", "new"), headers=bearer(secret)).status_code == 403
    app.config["TEST_PROJECTS"][("acme", "new")] = "API"
    assert client.get(repo("acme", "new"), headers=bearer(secret)).status_code == 200


def test_project_loader_is_asked_with_workspace_and_repository(
    app: Flask, tokens: AccessTokens, client: Any, tokens_by_type: dict[str, str]
) -> None:
    calls: list[tuple[str, str]] = []

    @tokens.project_loader
    def spy(ws: str, slug: str) -> str | None:
        calls.append((ws, slug))
        return "API"

    assert client.get(repo("acme", "web"), headers=bearer(tokens_by_type["project"])).status_code
    assert calls == [("acme", "web")]


def test_no_project_loader_denies_project_tokens_on_repositories(tmp_path: Path) -> None:
    """Without a loader there is no way to tell: fail closed."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'nl.db'}")
    db = SQLAlchemy()
    db.init_app(app)
    tokens = AccessTokens(app, db=db)

    @app.get("/repositories/<workspace>/<repo_slug>")
    @require_scope("repository")
    def repository(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/projects/<workspace>/<project_key>")
    @require_scope("repository")
    def project_view(workspace: str, project_key: str) -> Any:
        return jsonify(ok=True)

    try:
        with app.app_context():
            db.create_all()
            secret = tokens.create_token(
                name="p", workspace="acme", project="API", scopes=["project"]
            ).secret
            ws = tokens.create_token(name="w", workspace="acme", scopes=["repository"]).secret
        client = app.test_client()
        assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 403
        assert client.get("/projects/acme/API", headers=bearer(secret)).status_code == 200
        assert client.get("/repositories/acme/api", headers=bearer(ws)).status_code == 200
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_custom_view_arg_names(tmp_path: Path) -> None:
    app, db, tokens = make_app(
        f"sqlite:///{tmp_path / 'va.db'}",
        ACCESSTOKENS_VIEW_ARGS={"workspace": "ws", "project": "key", "repository": "slug"},
    )

    @app.get("/r/<ws>/<slug>")
    @require_scope("repository")
    def r(ws: str, slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/p/<ws>/<key>")
    @require_scope("repository")
    def p(ws: str, key: str) -> Any:
        return jsonify(ok=True)

    try:
        with app.app_context():
            repo_token = tokens.create_token(
                name="r", workspace="acme", repository="api", scopes=["repository"]
            ).secret
            project_token = tokens.create_token(
                name="p", workspace="acme", project="API", scopes=["repository"]
            ).secret
        client = app.test_client()
        assert client.get("/r/acme/api", headers=bearer(repo_token)).status_code == 200
        assert client.get("/r/acme/lib", headers=bearer(repo_token)).status_code == 403
        assert client.get("/p/acme/API", headers=bearer(project_token)).status_code == 200
        assert client.get("/r/acme/lib", headers=bearer(project_token)).status_code == 200
        assert client.get("/r/acme/web", headers=bearer(project_token)).status_code == 403
        # The default names no longer name anything: fail closed.
        response = client.get("/repositories/acme/api", headers=bearer(repo_token))
        assert response.status_code == 403
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


@pytest.mark.parametrize(
    ("bound", "url", "expected"),
    [
        ({"repository": "api"}, "/workspaces/acme/listing", ["api"]),
        ({"project": "API"}, "/workspaces/acme/listing", ["api", "lib"]),
        ({}, "/workspaces/acme/listing", ["api", "lib", "web"]),
        ({"repository": "api"}, "/workspaces/acme/projects/API/listing", ["api"]),
        ({"project": "API"}, "/workspaces/acme/projects/API/listing", ["api", "lib"]),
        ({}, "/workspaces/acme/projects/WEB/listing", ["web"]),
    ],
)
def test_container_route_lists_what_the_token_reaches(
    tokens: Any, client: Any, bound: dict[str, str], url: str, expected: list[str]
) -> None:
    scopes = ["project"] if "project" in bound or not bound else ["repository"]
    new = tokens.create_token(name="t", workspace="acme", scopes=scopes, **bound)
    response = client.get(url, headers={"Authorization": f"Bearer {new.secret}"})
    assert response.status_code == 200
    assert response.get_json() == expected


@pytest.mark.parametrize(
    ("bound", "url"),
    [
        ({"repository": "api"}, "/workspaces/hobby/listing"),
        ({"repository": "web"}, "/workspaces/acme/projects/API/listing"),
        ({"project": "WEB"}, "/workspaces/acme/projects/API/listing"),
        ({"project": "API"}, "/workspaces/hobby/projects/API/listing"),
    ],
)
def test_container_route_refuses_tokens_bound_outside(
    tokens: Any, client: Any, bound: dict[str, str], url: str
) -> None:
    scopes = ["project"] if "project" in bound else ["repository"]
    new = tokens.create_token(name="t", workspace="acme", scopes=scopes, **bound)
    response = client.get(url, headers={"Authorization": f"Bearer {new.secret}"})
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]


def test_container_route_still_needs_the_scope(tokens: Any, client: Any) -> None:
    new = tokens.create_token(name="t", workspace="acme", repository="api", scopes=["webhook"])
    response = client.get(
        "/workspaces/acme/listing", headers={"Authorization": f"Bearer {new.secret}"}
    )
    assert response.status_code == 403


def test_container_route_naming_no_resource_admits_every_valid_token(
    app: Flask, tokens: Any, client: Any
) -> None:
    """``/user``-style routes: the token is inside the root, and the view
    decides from ``current_token`` what to show. A malformed resource argument
    still fails closed."""

    @app.get("/me")
    @require_scope("repository", container=True)
    def me() -> Any:
        return jsonify(workspace=current_token.workspace, type=current_token.type)

    @app.get("/numbered/<int:workspace>")
    @require_scope("repository", container=True)
    def numbered(workspace: int) -> Any:
        return jsonify(ok=True)

    for bound, token_type in (({"repository": "api"}, "repository"), ({}, "workspace")):
        new = tokens.create_token(name="t", workspace="acme", scopes=["repository"], **bound)
        response = client.get("/me", headers=bearer(new.secret))
        assert response.status_code == 200
        assert response.get_json() == {"workspace": "acme", "type": token_type}
        assert client.get("/numbered/7", headers=bearer(new.secret)).status_code == 403

    webhook_only = tokens.create_token(name="w", workspace="acme", scopes=["webhook"])
    assert client.get("/me", headers=bearer(webhook_only.secret)).status_code == 403
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers=bearer("nope")).status_code == 401
