"""The framework guide's and the composition guide's code are the files under
``examples/frameworks`` and ``examples/composition``; these tests run them
against the real flask-smorest, APIFlask, Flask-RESTX, Flask-JWT-Extended,
Flask-Login and Flask-HTTPAuth."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask_smorest import Blueprint
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope
from flask_accesstokens.requirements import protected_routes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GUIDE = (ROOT / "docs" / "frameworks.rst").read_text(encoding="utf-8")
NO_TOKEN = 'Bearer realm="api"'
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"

Loaded = tuple[ModuleType, Flask]


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Callable[..., Loaded]]:
    """Load an example file as a fresh module and build its app on a
    database of its own."""
    built: list[Loaded] = []

    def load(relative: str, **config: Any) -> Loaded:
        path = EXAMPLES / relative
        name = f"example_{path.stem}_{len(built)}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        uri = f"sqlite:///{tmp_path / (name + '.sqlite')}"
        app = module.create_app({"SQLALCHEMY_DATABASE_URI": uri, "TESTING": True, **config})
        built.append((module, app))
        return module, app

    yield load
    for module, app in built:
        with app.app_context():
            AccessTokens.dispose_connections()
            module.db.engine.dispose()
        sys.modules.pop(module.__name__, None)


def token(module: ModuleType, app: Flask, *scopes: str, repository: str = "api") -> str:
    with app.app_context():
        return str(
            module.tokens.create_token(
                name="CI", workspace="acme", repository=repository, scopes=scopes
            ).secret
        )


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(
    "name",
    [
        "frameworks/smorest_app.py",
        "frameworks/smorest_wiring.py",
        "frameworks/apiflask_app.py",
        "frameworks/restx_app.py",
        "frameworks/methodview_app.py",
        "composition/jwt_app.py",
        "composition/login_app.py",
        "composition/httpauth_app.py",
    ],
)
def test_the_guide_includes_every_example(name: str) -> None:
    assert f".. literalinclude:: ../examples/{name}" in GUIDE
    assert (EXAMPLES / name).is_file()


# -- flask-smorest --------------------------------------------------------------------


def test_smorest_checks_the_token_before_the_body(example: Callable[..., Loaded]) -> None:
    module, app = example("frameworks/smorest_app.py")
    client = app.test_client()
    url = "/repositories/acme/api/pullrequests"

    anonymous = client.post(url, json={"not": "a pull request"})
    assert anonymous.status_code == 401  # not 422 with the validation details
    assert anonymous.headers["WWW-Authenticate"] == NO_TOKEN  # kept by smorest's handler
    assert anonymous.get_json()["message"].startswith("Authentication required")
    assert "errors" not in anonymous.get_json()

    secret = token(module, app, "pullrequest:write")
    assert (
        client.post(url, json={"not": "a pull request"}, headers=bearer(secret)).status_code == 422
    )
    created = client.post(url, json={"title": "Fix"}, headers=bearer(secret))
    assert created.status_code == 201
    assert created.get_json() == {"title": "Fix", "author": "CI (access token)"}

    other = client.post(
        "/repositories/acme/web/pullrequests", json={"title": "x"}, headers=bearer(secret)
    )
    assert other.status_code == 403
    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    assert other.headers["X-Accepted-OAuth-Scopes"] == "pullrequest:write"


def test_smorest_spec_states_the_scopes_once(example: Callable[..., Loaded]) -> None:
    module, app = example("frameworks/smorest_app.py")
    spec = module.api.spec.to_dict()
    assert spec["components"]["securitySchemes"]["accessToken"] == {
        "type": "http",
        "scheme": "bearer",
    }
    path = spec["paths"]["/repositories/{workspace}/{repo_slug}/pullrequests"]
    assert path["post"]["security"] == [{"accessToken": ["pullrequest:write"]}]
    assert path["get"]["security"] == [
        {"accessToken": ["pullrequest"]},
        {"accessToken": ["webhook"]},
    ]
    for operation in (path["post"], path["get"]):
        assert {"401", "403"} <= set(operation["responses"])
    assert "422" in path["post"]["responses"]  # smorest's own, untouched


@pytest.mark.parametrize("wiring", ["documented_api", "api_with_the_plugin"])
def test_smorest_wiring_when_init_app_came_first(wiring: str, tmp_path: Path) -> None:
    path = EXAMPLES / "frameworks" / "smorest_wiring.py"
    spec = importlib.util.spec_from_file_location("example_smorest_wiring", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'w.sqlite'}",
        API_TITLE="t",
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
    )
    tokens = AccessTokens(app, db=SQLAlchemy(app))  # before any Api exists
    if wiring == "documented_api":
        api = module.documented_api(app, tokens)
    else:
        api = module.api_with_the_plugin(app)
    blp = Blueprint("b", __name__)

    @blp.get("/repositories/<workspace>/<repo_slug>")
    @require_scope("repository")
    def read(workspace: str, repo_slug: str) -> dict[str, str]:
        return {}

    api.register_blueprint(blp)
    operation = api.spec.to_dict()["paths"]["/repositories/{workspace}/{repo_slug}"]["get"]
    assert operation["security"] == [{"accessToken": ["repository"]}]
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


# -- APIFlask -------------------------------------------------------------------------


def test_apiflask_checks_the_token_before_the_body(example: Callable[..., Loaded]) -> None:
    module, app = example("frameworks/apiflask_app.py")
    client = app.test_client()
    url = "/repositories/acme/api/pipelines"

    anonymous = client.post(url, json={"nope": 1})
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == NO_TOKEN
    secret = token(module, app, "pipeline:write")
    assert client.post(url, json={"nope": 1}, headers=bearer(secret)).status_code == 422
    started = client.post(url, json={"branch": "main"}, headers=bearer(secret))
    assert started.status_code == 201
    assert started.get_json() == {"branch": "main", "started_by": "CI (access token)"}

    # optional=True: the app's own credentials, or none, run the view anonymously.
    assert client.get(url, headers=bearer(JWT)).get_json()["token"] is None
    assert client.get(url, headers=bearer(secret)).get_json()["token"] == "CI"
    assert client.get(url, headers=bearer("bbat_nope")).status_code == 401


@pytest.mark.parametrize("admin", [None, "/admin"])
def test_apiflask_spec_builds_beside_the_extensions_blueprints(
    example: Callable[..., Loaded], admin: str | None
) -> None:
    """The management API and the admin pages are plain Flask blueprints
    with before_request hooks, which APIFlask's generator once crashed on."""
    _, app = example("frameworks/apiflask_app.py", ACCESSTOKENS_ADMIN_URL_PREFIX=admin)
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert not any(path.startswith(("/api/", "/admin")) for path in spec["paths"])
    assert spec["components"]["securitySchemes"]["accessToken"] == {
        "type": "http",
        "scheme": "bearer",
    }
    path = spec["paths"]["/repositories/{workspace}/{repo_slug}/pipelines"]
    assert path["post"]["security"] == [{"accessToken": ["pipeline:write"]}]
    assert path["get"]["security"] == [{"accessToken": ["pipeline"]}, {}]
    assert {"401", "403"} <= set(path["get"]["responses"])


def test_apiflask_on_openapi_3_0_names_the_scopes_in_words(
    example: Callable[..., Loaded],
) -> None:
    _, app = example("frameworks/apiflask_app.py", OPENAPI_VERSION="3.0.3")
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["openapi"] == "3.0.3"
    path = spec["paths"]["/repositories/{workspace}/{repo_slug}/pipelines"]
    assert path["post"]["security"] == [{"accessToken": []}]
    assert "`pipeline:write`" in path["post"]["description"]
    assert path["get"]["security"] == [{"accessToken": []}, {}]
    assert "optional" in path["get"]["description"]


# -- Flask-RESTX ----------------------------------------------------------------------


def test_restx_checks_the_token_before_the_payload(example: Callable[..., Loaded]) -> None:
    module, app = example("frameworks/restx_app.py")
    client = app.test_client()
    url = "/repositories/acme/api/pipelines_config/variables"

    anonymous = client.post(url, json={"nope": 1})
    assert anonymous.status_code == 401  # not RESTX's 400 for the payload
    assert anonymous.headers["WWW-Authenticate"] == NO_TOKEN
    # RESTX renders an HTTPException's ``data`` as the body.
    assert anonymous.get_json()["message"].startswith("Authentication required")

    secret = token(module, app, "pipeline:variable")
    assert client.post(url, json={"nope": 1}, headers=bearer(secret)).status_code == 400
    created = client.post(url, json={"key": "K"}, headers=bearer(secret))
    assert created.status_code == 201
    assert created.get_json() == {"key": "K", "created_by": "CI (access token)"}

    swagger = client.get("/swagger.json").get_json()
    operation = swagger["paths"]["/repositories/{workspace}/{repo_slug}/pipelines_config/variables"]
    assert operation["post"]["security"] == [{"accessToken": []}]
    assert swagger["securityDefinitions"] == module.AUTHORIZATIONS
    (route,) = protected_routes(app)
    assert f"`{route.requirement.scopes[0]}`" in operation["post"]["description"]


# -- MethodView -----------------------------------------------------------------------


def test_method_view_decorators_and_method_decorators(example: Callable[..., Loaded]) -> None:
    module, app = example("frameworks/methodview_app.py")
    client = app.test_client()
    hooks_url, branches_url = "/repositories/acme/api/hooks", "/repositories/acme/api/branches"
    hooks = token(module, app, "webhook")
    admin = token(module, app, "repository:admin", "repository")

    assert client.post(hooks_url, data="not json").status_code == 401  # before the body
    assert client.post(hooks_url, json={}, headers=bearer(hooks)).status_code == 400
    assert client.get(hooks_url, headers=bearer(hooks)).get_json() == {
        "webhooks": [],
        "token": "CI",
    }
    assert client.get(hooks_url, headers=bearer(admin)).status_code == 403

    assert client.get(branches_url, headers=bearer(admin)).status_code == 200
    assert client.delete(branches_url, headers=bearer(admin)).status_code == 204
    refused = client.delete(branches_url, headers=bearer(hooks))
    assert refused.status_code == 403
    assert refused.headers["X-Accepted-OAuth-Scopes"] == "repository:admin"

    found = {(r.endpoint, r.methods): r.requirement.scopes for r in protected_routes(app)}
    assert found == {
        ("webhooks", ("GET", "POST")): ("webhook",),
        ("branches", ("DELETE",)): ("repository:admin",),
        ("branches", ("GET",)): ("repository",),
    }


# -- composition ----------------------------------------------------------------------


def test_jwt_users_and_tokens_share_a_route(example: Callable[..., Loaded]) -> None:
    module, app = example("composition/jwt_app.py")
    client = app.test_client()
    url = "/repositories/acme/api"
    jwt = client.post("/login/alice").get_json()["jwt"]
    secret = token(module, app, "repository")

    assert client.get(url, headers=bearer(jwt)).get_json() == {
        "repository": "api",
        "read_by": "alice",
    }
    assert client.get(url, headers=bearer(secret)).get_json()["read_by"] == "CI (access token)"
    assert client.get(url).status_code == 401  # Flask-JWT-Extended's answer
    assert client.get(url, headers=bearer("bbat_nope")).status_code == 401
    assert client.get(url, headers=bearer("bbat_nope")).headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="invalid_token"'
    )


def test_jwt_users_manage_tokens_and_tokens_do_not(example: Callable[..., Loaded]) -> None:
    module, app = example("composition/jwt_app.py")
    client = app.test_client()
    url = "/api/repositories/acme/api/access-tokens"
    alice = client.post("/login/alice").get_json()["jwt"]
    bob = client.post("/login/bob").get_json()["jwt"]
    body = {"name": "deploy", "scopes": ["repository"]}

    created = client.post(url, json=body, headers=bearer(alice))
    assert created.status_code == 201, created.get_json()
    secret = created.get_json()["token"]
    assert client.get(url, headers=bearer(alice)).status_code == 200
    assert client.post(url, json=body, headers=bearer(bob)).status_code == 403  # not an admin
    refused = client.post(url, json=body, headers=bearer(secret))
    assert refused.status_code == 403
    assert "Access tokens cannot manage access tokens" in refused.get_json()["error"]["message"]


def test_session_users_and_tokens_share_a_route(example: Callable[..., Loaded]) -> None:
    module, app = example("composition/login_app.py")
    url = "/repositories/acme/api"
    secret = token(module, app, "repository")

    machine = app.test_client()
    read = machine.get(url, headers=bearer(secret))
    assert read.get_json()["read_by"] == "CI (access token)"
    assert "Set-Cookie" not in read.headers
    assert machine.get(url).status_code == 401  # Flask-Login's unauthorized()
    assert machine.get(url, headers=bearer("bbat_nope")).status_code == 401

    person = app.test_client()
    assert person.post("/login/alice").status_code == 200
    assert person.get(url).get_json() == {"repository": "api", "read_by": "alice"}
    # A signed-in user's browser sending some other Authorization header is still alice.
    assert person.get(url, headers=bearer(JWT)).get_json()["read_by"] == "alice"


def test_basic_users_and_tokens_share_a_route(example: Callable[..., Loaded]) -> None:
    module, app = example("composition/httpauth_app.py")
    client = app.test_client()
    url = "/repositories/acme/api"
    secret = token(module, app, "repository")

    assert client.get(url, auth=("alice", "secret")).get_json()["read_by"] == "alice"
    wrong = client.get(url, auth=("alice", "wrong"))
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")  # Flask-HTTPAuth's challenge
    assert client.get(url, auth=("x-token-auth", secret)).get_json()["read_by"] == (
        "CI (access token)"
    )
    assert client.get(url, headers=bearer(secret)).status_code == 200
    other = client.get("/repositories/acme/web", headers=bearer(secret))
    assert other.status_code == 403
    assert re.search(r'error="insufficient_scope"', other.headers["WWW-Authenticate"])
    assert client.get(url, auth=("x-token-auth", "bbat_nope")).status_code == 401
