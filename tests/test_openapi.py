"""The apispec plugin: what a protected operation gets in the app's spec, on
OpenAPI 3.1, 3.0 and Swagger 2.0, and however the app wires it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apispec import APISpec
from flask import Flask
from flask_smorest import Api
from flask_smorest import Blueprint
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_any_scope
from flask_accesstokens import require_scope
from flask_accesstokens.openapi import AccessTokenPlugin
from flask_accesstokens.openapi import openapi_path
from flask_accesstokens.openapi import scopes_sentence
from flask_accesstokens.openapi import security
from flask_accesstokens.requirements import Requirement

PATH = "/repositories/{workspace}/{repo_slug}"


def blueprint() -> Blueprint:
    blp = Blueprint("repos", __name__, url_prefix="/repositories/<workspace>/<repo_slug>")

    @blp.get("")
    @require_scope("repository", "webhook")
    def repository(workspace: str, repo_slug: str) -> dict[str, str]:
        return {}

    @blp.get("/either")
    @require_any_scope("runner", "pipeline", optional=True)
    def either(workspace: str, repo_slug: str) -> dict[str, str]:
        return {}

    @blp.get("/own")
    @blp.doc(
        security=[{"jwt": []}],
        description="Read it.",
        responses={"401": {"description": "Sign in."}},
    )
    @require_scope("repository", optional=True)
    def own(workspace: str, repo_slug: str) -> dict[str, str]:
        return {}

    @blp.get("/open")
    def open_(workspace: str, repo_slug: str) -> dict[str, str]:
        return {}

    return blp


@pytest.fixture
def app() -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI="sqlite://",
        API_TITLE="t",
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
    )
    yield app
    if "sqlalchemy" in app.extensions:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def with_tokens(app: Flask) -> AccessTokens:
    return AccessTokens(app, db=SQLAlchemy(app))


def paths(api: Api) -> dict[str, Any]:
    return api.spec.to_dict()["paths"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("order", ["api-first", "tokens-first", "after-blueprints"])
def test_smorest_is_documented_in_any_order(app: Flask, order: str) -> None:
    if order == "api-first":  # init_app finds the Api
        api = Api(app)
        with_tokens(app)
        api.register_blueprint(blueprint())
    elif order == "tokens-first":  # one line once the Api exists
        tokens = with_tokens(app)
        api = Api(app)
        tokens.document_openapi(api)
        api.register_blueprint(blueprint())
    else:  # paths already in the spec are documented too
        tokens = with_tokens(app)
        api = Api(app)
        api.register_blueprint(blueprint())
        tokens.document_openapi(app)
    found = paths(api)
    assert found[PATH]["get"]["security"] == [{"accessToken": ["repository", "webhook"]}]
    assert found[PATH + "/either"]["get"]["security"] == [
        {"accessToken": ["runner"]},
        {"accessToken": ["pipeline"]},
        {},
    ]
    assert "security" not in found[PATH + "/open"]["get"]
    assert "401" not in found[PATH + "/open"]["get"]["responses"]
    schemes = api.spec.to_dict()["components"]["securitySchemes"]
    assert schemes == {"accessToken": {"type": "http", "scheme": "bearer"}}


def test_documenting_twice_adds_nothing(app: Flask) -> None:
    api = Api(app)
    tokens = with_tokens(app)
    tokens.document_openapi(api)
    tokens.document_openapi(app)
    api.register_blueprint(blueprint())
    assert sum(isinstance(p, AccessTokenPlugin) for p in api.spec.plugins) == 1
    assert paths(api)[PATH]["get"]["security"] == [{"accessToken": ["repository", "webhook"]}]


def test_what_the_app_documented_itself_is_kept(app: Flask) -> None:
    api = Api(app)
    with_tokens(app)
    api.register_blueprint(blueprint())
    own = paths(api)[PATH + "/own"]["get"]
    assert own["security"] == [{"jwt": []}, {"accessToken": ["repository"]}, {}]
    assert own["responses"]["401"] == {"description": "Sign in."}
    assert "403" in own["responses"]
    assert own["description"] == "Read it."  # 3.1: the scopes are in security


def test_openapi_3_0_names_the_scopes_in_the_description(app: Flask) -> None:
    app.config["OPENAPI_VERSION"] = "3.0.3"
    api = Api(app)
    with_tokens(app)
    api.register_blueprint(blueprint())
    found = paths(api)
    assert found[PATH]["get"]["security"] == [{"accessToken": []}]
    assert found[PATH]["get"]["description"] == (
        "Needs an access token with the scopes `repository` and `webhook`."
    )
    assert found[PATH + "/either"]["get"]["security"] == [{"accessToken": []}, {}]
    own = found[PATH + "/own"]["get"]
    assert own["description"].startswith("Read it.\n\nNeeds an access token with the scope")


def test_swagger_2_is_left_alone(app: Flask) -> None:
    app.config["OPENAPI_VERSION"] = "2.0"
    api = Api(app)
    with_tokens(app)
    api.register_blueprint(blueprint())
    spec = api.spec.to_dict()
    assert "securityDefinitions" not in spec
    assert "security" not in spec["paths"][PATH]["get"]


def test_the_plugin_on_a_spec_of_its_own(app: Flask) -> None:
    """Any apispec spec: the plugin maps each path to the protected rules."""
    with_tokens(app)
    app.register_blueprint(blueprint())
    spec = APISpec("t", "1", "3.1.0", plugins=[AccessTokenPlugin(app)])
    spec.path(path=PATH, operations={"get": {"responses": {"200": {"description": "ok"}}}})
    spec.path(path=PATH + "/open", operations={"get": {}})
    found = spec.to_dict()["paths"]
    assert found[PATH]["get"]["security"] == [{"accessToken": ["repository", "webhook"]}]
    assert set(found[PATH]["get"]["responses"]) == {"200", "401", "403"}
    assert found[PATH + "/open"]["get"] == {}


def test_document_openapi_refuses_what_it_cannot_document(app: Flask) -> None:
    tokens = with_tokens(app)
    with pytest.raises(TypeError, match="flask-smorest Api"):
        tokens.document_openapi(object())
    with pytest.raises(TypeError, match="after its init_app"):
        tokens.document_openapi(Api())


def test_a_plain_flask_app_without_a_framework_is_left_alone(app: Flask) -> None:
    tokens = with_tokens(app)
    tokens.document_openapi(app)  # nothing to document, nothing to fail
    assert "flask-smorest" not in app.extensions


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("/a/<workspace>/<int:id>", "/a/{workspace}/{id}"),
        ("/a/<path:rest>", "/a/{rest}"),
        ("/plain", "/plain"),
    ],
)
def test_openapi_path(rule: str, path: str) -> None:
    assert openapi_path(rule) == path


@pytest.mark.parametrize(
    ("requirement", "v31", "v30"),
    [
        (Requirement(("a",)), [{"accessToken": ["a"]}], [{"accessToken": []}]),
        (Requirement(("a", "b")), [{"accessToken": ["a", "b"]}], [{"accessToken": []}]),
        (
            Requirement(("a", "b"), any_of=True),
            [{"accessToken": ["a"]}, {"accessToken": ["b"]}],
            [{"accessToken": []}],
        ),
        (
            Requirement(("a",), optional=True),
            [{"accessToken": ["a"]}, {}],
            [{"accessToken": []}, {}],
        ),
        (Requirement(()), [{"accessToken": []}], [{"accessToken": []}]),
    ],
)
def test_security(requirement: Requirement, v31: list[Any], v30: list[Any]) -> None:
    assert security(requirement, (3, 1)) == v31
    assert security(requirement, (3, 0)) == v30


@pytest.mark.parametrize(
    ("requirement", "sentence"),
    [
        (Requirement(("a",)), "Needs an access token with the scope `a`."),
        (Requirement(("a", "b", "c")), "Needs an access token with the scopes `a`, `b` and `c`."),
        (
            Requirement(("a", "b"), any_of=True),
            "Needs an access token with one of the scopes `a` or `b`.",
        ),
        (
            Requirement((), optional=True),
            "Needs any valid access token (optional: without one, the request is anonymous).",
        ),
    ],
)
def test_scopes_sentence(requirement: Requirement, sentence: str) -> None:
    assert scopes_sentence(requirement) == sentence
