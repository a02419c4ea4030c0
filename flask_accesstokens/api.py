"""The management JSON API: create, list, show, revoke and rotate tokens of a
repository, a project or a workspace.

It parses, calls the service and renders; ``web.py`` decides who may manage.
The rules that hold for every app:

- a request that carries an access token is refused before anything else, so
  tokens can never manage tokens, whatever the app's loader says;
- state-changing POSTs must be ``application/json``, which a cross-site HTML
  form cannot send, and at most 64 KiB, of which nothing more is read;
- an id of another resource is answered exactly like an unknown id (404).

Responses never hold a secret, except the one a create or rotate just made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from typing import NoReturn

from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import apidoc
from .config import MAX_ROTATION_GRACE
from .errors import AccessTokenError
from .errors import error_body
from .errors import InvalidToken
from .errors import PlanRestriction
from .errors import TokenConflict
from .errors import TokenValidationError
from .errors import UnknownResource
from .gateway import register_check
from .introspection import introspect
from .models import AccessToken
from .models import NAME_MAX_LENGTH
from .pipeline import Pipeline
from .resources import Resource
from .serialize import new_token_json
from .serialize import parse_datetime
from .serialize import self_json
from .serialize import token_json
from .service import STATES
from .service import TokenService
from .state import app_state
from .web import LazyBlueprint
from .web import refuse_tokens_and_bad_queries
from .web import require_manager
from .web import resource_args
from .web import resource_from_view_args
from .web import resource_rules

blueprint = LazyBlueprint("accesstokens_api", __name__)

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100
#: Far past any real list; keeps the offset a small integer for every database.
MAX_PAGE = 1_000_000
#: The contract's bound on a management request body.
MAX_BODY = 64 * 1024
CREATE_FIELDS = frozenset({"allowed_ips", "name", "scopes", "expires_at"})
ROTATE_FIELDS = frozenset({"grace", "scopes"})
LIST_PARAMETERS = frozenset({"pagelen", "state", "never_used", "last_used_before", "q"})
#: The most tokens one public revocation request may name.
MAX_PUBLIC_REVOCATIONS = 1000
#: Routes a token may call: they authenticate it themselves, or (leak
#: reports, public revocation) need no one's authority.
TOKEN_ENDPOINTS: set[str] = {
    "accesstokens_api.openapi",
    "accesstokens_api.self_get",
    "accesstokens_api.self_delete",
    "accesstokens_api.secret_scanning",
    "accesstokens_api.public_revocation",
    "accesstokens_api.gateway_check",
    "accesstokens_api.gateway_check_path",
    "accesstokens_api.introspect",
}
#: ``app.extensions`` key of the app's public revocation throttle.
PUBLIC_THROTTLE_KEY = "accesstokens.public_revocation"


class APIError(HTTPException):
    """An error answered in Bitbucket's JSON shape."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        response = jsonify(error_body(message, **extra))
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        super().__init__(message, response=response)
        self.code = status


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    raise APIError(status, message, **extra)


def invalid(fields: Mapping[str, str], message: str = "Invalid input.") -> NoReturn:
    raise APIError(400, message, fields=dict(fields))


def _service() -> TokenService:
    return TokenService.of(current_app)


def _bitbucket() -> bool:
    """Token objects keep Bitbucket's fields in Bitbucket's model only."""
    return app_state().model.is_bitbucket()


# -- guards and errors ---------------------------------------------------------------


@blueprint.before_request
def refuse_access_tokens() -> None:
    if request.endpoint in TOKEN_ENDPOINTS:
        return
    refuse_tokens_and_bad_queries(
        "Access tokens cannot manage access tokens. Sign in as a user instead."
    )


@blueprint.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    """Every error of this API in Bitbucket's JSON shape, never an HTML page."""
    if isinstance(error, (APIError, AccessTokenError)) or error.response is not None:
        return error.get_response()  # a token's own 401/403: as on a protected route
    response = jsonify(error_body(error.description or error.name))
    response.status_code = error.code or 500
    response.headers["Cache-Control"] = "no-store"
    for key, value in error.get_headers():
        if key.lower() not in ("content-type", "content-length"):
            response.headers[key] = value
    return response


@blueprint.errorhandler(SQLAlchemyError)
def storage_error(error: SQLAlchemyError) -> Response:
    """The database failed: nothing was changed, say so without a 500 page."""
    app_state().db.session.rollback()
    current_app.logger.error("access-token management failed", exc_info=error)
    response = jsonify(error_body("Access tokens cannot be managed right now. Try again later."))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.after_request
def no_store(response: Response) -> Response:
    # Token lists are private, and two responses carry a secret: keep them
    # all out of shared and browser caches.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _managed(view_args: Mapping[str, str]) -> tuple[Resource, str]:
    resource = resource_from_view_args(view_args)
    return resource, require_manager(resource)


def _token_on(resource: Resource, token_id: str) -> AccessToken:
    token = _service().get_on(resource, token_id)
    if token is None:
        fail(404, "No such access token on this resource.")
    return token


def json_body(allowed: frozenset[str] | None = None) -> Any:
    """The JSON a POST sends. ``application/json`` only: a cross-site form
    cannot send it without a CORS preflight. At most ``MAX_BODY`` bytes are
    read; a longer body is 413."""
    if request.mimetype != "application/json":
        fail(415, "Send a JSON body with 'Content-Type: application/json'.")
    raw = raw_body(MAX_BODY)
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            invalid({}, "The request body is not valid JSON.")
    if allowed is None:
        return body
    if not isinstance(body, dict):
        invalid({}, "The request body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        invalid({name: "unknown field" for name in unknown})
    return body


def _read_at_most(limit: int) -> bytes:
    """Up to ``limit`` bytes of the body. A server's input may return fewer
    bytes than asked before the end (a socket, a de-chunker): keep reading
    until the limit or the end, so an oversized body is never cut short and
    taken for a small one."""
    stream = request.stream
    parts: list[bytes] = []
    left = limit
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


# -- routes ----------------------------------------------------------------------------


def create(**view_args: str) -> tuple[Response, int, dict[str, str]]:
    resource, manager = _managed(view_args)
    refusal = _service().plan_refusal(resource)
    if refusal is not None:  # before the body: the form of a refused request is moot
        allowed = _service().types_for(resource)
        fail(403, refusal, detail={"allowed_types": list(allowed)})
    body = json_body(CREATE_FIELDS)
    errors: dict[str, str] = {}
    name: Any = body.get("name")
    if not isinstance(name, str):
        errors["name"] = "required, a string"
    scopes: Any = body.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        errors["scopes"] = "required, a list of scope names"
    allowed_ips: Any = body.get("allowed_ips")
    if allowed_ips is not None and (
        not isinstance(allowed_ips, list) or not all(isinstance(a, str) for a in allowed_ips)
    ):
        errors["allowed_ips"] = "a list of IP networks, or null for anywhere"
    expires_at = None
    if body.get("expires_at") is not None:
        try:
            expires_at = parse_datetime(body["expires_at"])
        except ValueError as e:
            errors["expires_at"] = str(e)
    if errors:
        invalid(errors)
    try:
        new = _service().create_on(
            resource,
            name=name,
            scopes=scopes,
            created_by=manager,
            expires_at=expires_at,
            allowed_ips=allowed_ips,
        )
    except UnknownResource as e:
        fail(404, e.message)
    except PlanRestriction as e:
        fail(403, e.message, detail={"allowed_types": list(e.allowed_types)})
    except TokenValidationError as e:
        invalid({e.field: e.message})
    location = _url("get", resource, token_id=new.token.id)
    return jsonify(new_token_json(new.secret, new.token, _bitbucket())), 201, {"Location": location}


def list_tokens(**view_args: str) -> Response:
    resource, _ = _managed(view_args)
    args = request.args
    errors: dict[str, str] = {}
    page = _int_arg("page", 1, 1, MAX_PAGE, errors)
    pagelen = _int_arg("pagelen", DEFAULT_PAGELEN, 1, MAX_PAGELEN, errors)
    state = args.get("state")
    if state is not None and state not in STATES:
        errors["state"] = f"must be one of {', '.join(STATES)}"
    never_used = args.get("never_used", "false")
    if never_used not in ("true", "false"):
        errors["never_used"] = "must be true or false"
    last_used_before = None
    if "last_used_before" in args:
        try:
            last_used_before = parse_datetime(args["last_used_before"])
        except ValueError as e:
            errors["last_used_before"] = str(e)
    q = args.get("q") or None
    if q is not None and (len(q) > NAME_MAX_LENGTH or not q.isprintable()):
        errors["q"] = f"at most {NAME_MAX_LENGTH} printable characters"
    if errors:
        invalid(errors)
    found = _service().search(
        resource,
        state=state,
        q=q,
        never_used=never_used == "true",
        last_used_before=last_used_before,
        page=page,
        pagelen=pagelen,
    )
    result: dict[str, Any] = {
        "values": [token_json(token, _bitbucket()) for token in found.items],
        "page": page,
        "pagelen": pagelen,
        "size": found.total,
    }
    if found.has_next:
        result["next"] = _page_url(page + 1)
    if page > 1:
        result["previous"] = _page_url(page - 1)
    return jsonify(result)


def get(token_id: str, **view_args: str) -> Response:
    resource, _ = _managed(view_args)
    return jsonify(token_json(_token_on(resource, token_id), _bitbucket()))


def revoke(token_id: str, **view_args: str) -> tuple[str, int]:
    resource, manager = _managed(view_args)
    token = _token_on(resource, token_id)
    _service().revoke(token.id, revoked_by=manager)
    return "", 204


def rotate(token_id: str, **view_args: str) -> tuple[Response, int]:
    resource, manager = _managed(view_args)
    token = _token_on(resource, token_id)
    body = json_body(ROTATE_FIELDS)
    grace = None
    if "grace" in body:
        seconds = body["grace"]
        limit = int(MAX_ROTATION_GRACE.total_seconds())
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= limit:
            invalid({"grace": f"seconds the old secret keeps working, 0 to {limit}"})
        grace = timedelta(seconds=seconds)
    try:
        new = _service().rotate(
            token.id, rotated_by=manager, grace=grace, scopes=body.get("scopes")
        )
    except TokenConflict as e:
        fail(409, e.message)
    except PlanRestriction as e:
        fail(403, e.message, detail={"allowed_types": list(e.allowed_types)})
    except TokenValidationError as e:
        invalid({e.field: e.message})
    if new is None:  # deleted since we looked
        fail(404, "No such access token on this resource.")
    return jsonify(new_token_json(new.secret, new.token, _bitbucket())), 201


def usage(token_id: str, **view_args: str) -> Response:
    """Which granted scopes served the token's requests, the resources they
    named, and the scopes it never needed."""
    resource, _ = _managed(view_args)
    found = _service().usage(_token_on(resource, token_id).id)
    if found is None:  # deleted since we looked
        fail(404, "No such access token on this resource.")
    return jsonify(found.as_json())


def _int_arg(name: str, default: int, low: int, high: int, errors: dict[str, str]) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 9 and low <= int(raw) <= high:
        return int(raw)
    errors[name] = f"must be an integer from {low} to {high}"
    return default


def _page_url(page: int) -> str:
    """This list's URL with another page number, filters kept."""
    # Only our own parameters, and the view arguments last: anything else
    # could clash with url_for's (``_external``, ``_anchor``) or re-target it.
    values: dict[str, Any] = {k: v for k, v in request.args.lists() if k in LIST_PARAMETERS}
    values.update(request.view_args or {}, page=page)
    return url_for(request.endpoint or "", _external=True, **values)


def _url(action: str, resource: Resource, **values: str) -> str:
    return url_for(
        f".{resource.type}_{action}", **resource_args(resource), **values, _external=True
    )


@blueprint.record
def _mount_model(setup: BlueprintSetupState) -> None:
    """Each app mounts the routes of its own model's levels, and no others."""
    for kind, path in resource_rules(app_state(setup.app).model):  # type: ignore[arg-type]
        base = f"{path}/access-tokens"
        setup.add_url_rule(base, f"{kind}_create", create, methods=["POST"])
        setup.add_url_rule(base, f"{kind}_list", list_tokens, methods=["GET"])
        setup.add_url_rule(f"{base}/<token_id>", f"{kind}_get", get, methods=["GET"])
        setup.add_url_rule(f"{base}/<token_id>", f"{kind}_revoke", revoke, methods=["DELETE"])
        setup.add_url_rule(f"{base}/<token_id>/rotate", f"{kind}_rotate", rotate, methods=["POST"])
        setup.add_url_rule(f"{base}/<token_id>/usage", f"{kind}_usage", usage)


# -- a token about itself --------------------------------------------------------------


@blueprint.get("/access-tokens/self", endpoint="self_get")
def self_get() -> Response:
    """What a job needs to know about the presenting token (never what its
    owners know about its use): :func:`~.serialize.self_json`."""
    token = Pipeline.of(current_app).identify()
    record = _service().get(token.id)
    if record is None:  # pruned between the lookup and now
        raise InvalidToken(realm=app_state().settings.realm)
    return jsonify(self_json(record, token.granted, _bitbucket()))


@blueprint.delete("/access-tokens/self", endpoint="self_delete")
def self_delete() -> tuple[str, int]:
    """Retire the presenting token: it stops working at once."""
    token = Pipeline.of(current_app).identify()
    _service().revoke(token.id, revoked_by=token.actor)
    return "", 204


# -- leaks ------------------------------------------------------------------------------------


def raw_body(limit: int) -> bytes:
    """The body as sent, at most ``limit`` bytes; 413 past that, without
    reading more than one byte past it."""
    length = request.content_length
    if length is not None and length > limit:
        fail(413, f"The request body must be at most {limit} bytes.")
    raw = _read_at_most(limit + 1)
    if len(raw) > limit:
        fail(413, f"The request body must be at most {limit} bytes.")
    return raw


# -- gateways: forward auth and introspection (their own modules) ----------------------

register_check(blueprint)
blueprint.add_url_rule("/access-tokens/introspect", "introspect", introspect, methods=["POST"])


# -- the OpenAPI document -----------------------------------------------------------------


@blueprint.get("/access-tokens/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API, as mounted in this app: its
    paths are the model's, its server URL the blueprint's prefix, its scopes
    the app's catalog."""
    prefix = request.path.removesuffix("/access-tokens/openapi.json")
    state = app_state()
    document = apidoc.document(state.model, state.catalog, request.script_root + prefix)
    response = jsonify(document)
    response.headers["Cache-Control"] = "no-cache"
    return response
