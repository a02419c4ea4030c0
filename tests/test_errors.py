"""``errors``: RFC 6750 challenges, Bitbucket-shaped bodies, and the
management errors that name a field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Blueprint
from flask import Flask
from helpers import bearer
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope
from flask_accesstokens import tokenformat
from flask_accesstokens.errors import AccessTokenError
from flask_accesstokens.errors import ConfigurationError
from flask_accesstokens.errors import error_body
from flask_accesstokens.errors import InsufficientScope
from flask_accesstokens.errors import InvalidRequest
from flask_accesstokens.errors import InvalidToken
from flask_accesstokens.errors import MissingToken
from flask_accesstokens.errors import PlanRestriction
from flask_accesstokens.errors import StorageUnavailable
from flask_accesstokens.errors import TokenConflict
from flask_accesstokens.errors import TokenValidationError
from flask_accesstokens.errors import TooManyFailures
from flask_accesstokens.errors import UnknownResource
from flask_accesstokens.errors import UnknownScopeError
from flask_accesstokens.errors import WrongResource
from flask_accesstokens.resources import Resource

#: Every error the request path raises, with its status.
REQUEST_ERRORS: list[tuple[type[AccessTokenError], int]] = [
    (MissingToken, 401),
    (InvalidToken, 401),
    (InvalidRequest, 400),
    (InsufficientScope, 403),
    (WrongResource, 403),
    (TooManyFailures, 429),
    (StorageUnavailable, 503),
]


def answer(error: HTTPException, environ: dict[str, Any] | None = None) -> Any:
    """The response Werkzeug would send for ``error``."""
    return error.get_response(environ)


def body_of(response: Any) -> Any:
    return json.loads(response.get_data(as_text=True))


# -- challenges ------------------------------------------------------------------------


def test_missing_token_is_a_bare_challenge() -> None:
    """RFC 6750 3.1: no error code when the request carried no token at all."""
    assert MissingToken().challenge() == 'Bearer realm="api"'


def test_invalid_token_and_invalid_request_name_their_error_code() -> None:
    assert InvalidToken().challenge() == 'Bearer realm="api", error="invalid_token"'
    assert InvalidRequest().challenge() == 'Bearer realm="api", error="invalid_request"'


def test_insufficient_scope_names_every_required_scope() -> None:
    error = InsufficientScope(required=("pullrequest:write", "pipeline"))
    assert error.challenge() == (
        'Bearer realm="api", error="insufficient_scope", scope="pullrequest:write pipeline"'
    )
    wrong = WrongResource(required=("repository",))
    assert wrong.challenge() == 'Bearer realm="api", error="insufficient_scope", scope="repository"'


def test_realm_is_quoted_as_rfc_7230_asks() -> None:
    error = InvalidToken(realm='my "quoted" realm \\ here')
    assert error.challenge() == (
        'Bearer realm="my \\"quoted\\" realm \\\\ here", error="invalid_token"'
    )


@pytest.mark.parametrize(("cls", "status"), REQUEST_ERRORS)
def test_every_request_error_has_its_status_and_a_json_body(
    cls: type[AccessTokenError], status: int
) -> None:
    response = answer(cls())
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = body_of(response)
    assert body["type"] == "error"
    assert body["error"]["message"] == cls.description


@pytest.mark.parametrize(("cls", "status"), REQUEST_ERRORS)
def test_challenges_go_with_401_400_and_403_only(cls: type[AccessTokenError], status: int) -> None:
    """A 429 or a 503 is not about the credentials: no challenge to retry with."""
    response = answer(cls())
    if status in (400, 401, 403):
        assert response.headers["WWW-Authenticate"] == cls().challenge()
    else:
        assert "WWW-Authenticate" not in response.headers


def test_too_many_failures_says_when_to_retry() -> None:
    response = answer(TooManyFailures(headers={"Retry-After": "17"}))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "17"


def test_storage_unavailable_asks_to_retry_soon() -> None:
    assert answer(StorageUnavailable()).headers["Retry-After"] == "5"


# -- bodies ----------------------------------------------------------------------------


def test_error_body_is_bitbucket_shaped() -> None:
    assert error_body("Nope.") == {"type": "error", "error": {"message": "Nope."}}
    assert error_body("Nope.", fields={"name": "required"}) == {
        "type": "error",
        "error": {"message": "Nope.", "fields": {"name": "required"}},
    }


def test_a_401_body_holds_only_a_message() -> None:
    assert body_of(answer(InvalidToken())) == {
        "type": "error",
        "error": {"message": InvalidToken.description},
    }


def test_a_403_body_says_what_was_required_and_granted() -> None:
    error = InsufficientScope(required=["repository:write"], granted=["repository"])
    assert body_of(answer(error)) == {
        "type": "error",
        "error": {
            "message": InsufficientScope.description,
            "detail": {
                "reason": "insufficient_scope",
                "required": ["repository:write"],
                "granted": ["repository"],
            },
        },
    }


def test_a_custom_message_replaces_the_description() -> None:
    assert body_of(answer(InvalidToken("Gone.")))["error"]["message"] == "Gone."


def test_wrong_resource_does_not_send_anyone_looking_for_a_scope() -> None:
    assert "scope" not in WrongResource.description.lower()
    assert WrongResource.description != InsufficientScope.description


@pytest.mark.parametrize(("cls", "status"), REQUEST_ERRORS)
def test_answers_never_echo_the_request(cls: type[AccessTokenError], status: int) -> None:
    """Whatever the request carried (header, query, path), the answer is built
    from the error alone."""
    secret = tokenformat.generate("bbat")
    environ = EnvironBuilder(
        path=f"/repositories/acme/{secret}",
        query_string={"access_token": secret},
        headers=bearer(secret),
    ).get_environ()
    response = answer(cls(required=["repository"], granted=["repository"]), environ)
    text = response.get_data(as_text=True) + str(response.headers)
    assert secret not in text
    assert secret[-12:] not in text


# -- over HTTP -------------------------------------------------------------------------


def test_wrong_resource_answers_alike_whether_the_resource_exists_or_not(
    app: Flask, tokens: AccessTokens
) -> None:
    """acme/web exists (the app knows its project), acme/nowhere does not: a
    token bound elsewhere cannot tell them apart."""
    secret = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret
    client = app.test_client()
    existing = client.get("/repositories/acme/web", headers=bearer(secret))
    missing = client.get("/repositories/acme/nowhere", headers=bearer(secret))
    assert existing.status_code == missing.status_code == 403
    assert existing.get_data() == missing.get_data()
    assert sorted(existing.headers.items()) == sorted(missing.headers.items())
    assert existing.get_json()["error"] == {
        "message": "This access token is not for this repository.",
        "detail": {"reason": "wrong_resource"},
    }


def test_an_app_error_handler_sees_the_exception(app: Flask) -> None:
    seen: list[AccessTokenError] = []

    @app.errorhandler(InvalidToken)
    def handle(error: InvalidToken) -> Any:
        seen.append(error)
        return {"mine": True}, 401

    response = app.test_client().get("/repositories/acme/api", headers=bearer("nope"))
    assert response.status_code == 401
    assert response.get_json() == {"mine": True}
    assert [type(e) for e in seen] == [InvalidToken]


# -- beside the app's and the frameworks' handlers ------------------------------------


@pytest.mark.parametrize(("cls", "status"), REQUEST_ERRORS)
def test_data_carries_the_message_and_the_headers(cls: type[AccessTokenError], status: int) -> None:
    """The webargs convention, which flask-smorest's handler keeps."""
    error = cls(required=["repository"], headers={"Retry-After": "7"})
    response = answer(error)
    assert set(error.data) == {"message", "headers"}
    assert error.data["message"] == error.description
    expected = {
        k: v for k, v in response.headers.items() if k not in ("Content-Type", "Content-Length")
    }
    assert error.data["headers"] == expected
    assert error.data["headers"]["Cache-Control"] == "no-store"
    if status in (400, 401, 403):
        assert error.data["headers"]["WWW-Authenticate"] == error.challenge()
    else:
        assert "WWW-Authenticate" not in error.data["headers"]


def test_data_follows_the_realm_set_after_the_error_was_made() -> None:
    error = InvalidToken()
    error.realm = "git"
    assert error.data["headers"]["WWW-Authenticate"].startswith('Bearer realm="git"')


@pytest.fixture
def secret(tokens: AccessTokens) -> str:
    """A read-only token on acme/api."""
    return tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret


def _handled(app: Flask, status: int | None = None, headers: dict[str, str] | None = None) -> None:
    """An app-wide handler for ``HTTPException`` that renders its own JSON
    and, like most, forgets the headers."""

    @app.errorhandler(HTTPException)
    def handle(error: HTTPException) -> Any:
        return {"error": error.name}, status or error.code, headers or {}


def test_a_handler_that_drops_the_challenge_does_not_lose_it(app: Flask, secret: str) -> None:
    _handled(app)
    client = app.test_client()
    missing = client.get("/repositories/acme/api")
    assert missing.status_code == 401
    assert missing.get_json() == {"error": "Unauthorized"}
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert missing.headers["Cache-Control"] == "no-store"

    invalid = client.get("/repositories/acme/api", headers=bearer("bbat_nope"))
    assert invalid.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'

    scope = client.post("/repositories/acme/api/push", headers=bearer(secret))
    assert scope.status_code == 403
    assert scope.get_json() == {"error": "Forbidden"}
    assert (
        'error="insufficient_scope", scope="repository:write"' in scope.headers["WWW-Authenticate"]
    )
    assert scope.headers["X-Accepted-OAuth-Scopes"] == "repository:write"
    assert scope.headers["X-OAuth-Scopes"] == "repository"


def test_a_blueprint_handler_is_covered_too(app: Flask) -> None:
    blp = Blueprint("mine", __name__)

    @blp.errorhandler(HTTPException)
    def handle(error: HTTPException) -> Any:
        return {"error": error.name}, error.code

    @blp.get("/mine/<workspace>/<repo_slug>")
    @require_scope("repository")
    def mine(workspace: str, repo_slug: str) -> Any:
        return {}

    app.register_blueprint(blp)
    response = app.test_client().get("/mine/acme/api")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_handlers_own_challenge_is_kept(app: Flask) -> None:
    _handled(app, headers={"WWW-Authenticate": 'Basic realm="site"'})
    response = app.test_client().get("/repositories/acme/api")
    assert response.headers.getlist("WWW-Authenticate") == ['Basic realm="site"']


def test_a_handler_that_answers_another_status_is_left_alone(app: Flask) -> None:
    _handled(app, status=302, headers={"Location": "/login"})
    response = app.test_client().get("/repositories/acme/api")
    assert response.status_code == 302
    assert "WWW-Authenticate" not in response.headers


def test_a_request_that_passes_gets_no_challenge(app: Flask, secret: str) -> None:
    _handled(app)
    response = app.test_client().get("/repositories/acme/api", headers=bearer(secret))
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers


# -- management errors -----------------------------------------------------------------


def test_validation_errors_are_value_errors_naming_the_field() -> None:
    error = TokenValidationError("name", "required")
    assert isinstance(error, ValueError)
    assert (error.field, error.message, str(error)) == ("name", "required", "name: required")


def test_unknown_resource_names_the_resource_type(app: Flask, tokens: AccessTokens) -> None:
    @tokens.resource_exists
    def exists(resource: Resource) -> bool:
        return resource.repository != "typo"

    with pytest.raises(UnknownResource) as raised:
        tokens.create_token(name="CI", workspace="acme", repository="typo", scopes=["repository"])
    assert isinstance(raised.value, TokenValidationError)
    assert isinstance(raised.value, ValueError)
    assert raised.value.field == "repository"
    assert str(raised.value).startswith("repository: ")
    assert tokens.list_tokens("acme", repository="typo") == []


def test_plan_restriction_names_the_type_and_what_the_plan_allows(
    app: Flask, tokens: AccessTokens
) -> None:
    @tokens.allowed_token_types_loader
    def plan(workspace: str) -> tuple[str, ...]:
        return ("repository",)

    with pytest.raises(PlanRestriction) as raised:
        tokens.create_token(name="CI", workspace="acme", scopes=["repository"])
    assert isinstance(raised.value, ValueError)
    assert raised.value.field == "type"
    assert raised.value.allowed_types == ("repository",)
    assert tokens.list_tokens("acme") == []


def test_configuration_and_scope_errors_are_value_errors() -> None:
    error = ConfigurationError("ACCESSTOKENS_REALM", "must be a string")
    assert isinstance(error, ValueError)
    assert error.key == "ACCESSTOKENS_REALM"
    assert str(error) == "ACCESSTOKENS_REALM must be a string"
    assert issubclass(UnknownScopeError, ValueError)


def test_a_conflict_is_not_a_validation_error() -> None:
    """The input was fine; the token's state forbids it (answered 409, not 400)."""
    error = TokenConflict("The token is revoked.")
    assert not isinstance(error, ValueError)
    assert error.message == "The token is revoked."
