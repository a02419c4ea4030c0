"""The management JSON API: create, list, show, revoke and rotate tokens of a
repository, a project or a workspace.

Who may manage is the host app's call (``manager_loader``); this module only
adds the rules that hold for every app:

- a request that carries an access token is refused before anything else, so
  tokens can never manage tokens, whatever the app's loader says;
- state-changing POSTs must be ``application/json``, which a cross-site HTML
  form cannot send;
- an id of another resource is answered exactly like an unknown id (404).

Responses never hold a secret, except the one a create or rotate just made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from functools import cache
from importlib import resources as importlib_resources
from typing import Any
from typing import NoReturn
from typing import TYPE_CHECKING

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .credentials import carries_token
from .credentials import query_is_utf8
from .errors import error_body
from .models import AccessToken
from .models import NAME_MAX_LENGTH
from .resources import Resource
from .serialize import new_token_json
from .serialize import token_json
from .store import MAX_ROTATION_GRACE
from .store import STATES
from .store import TokenStore
from .store import TokenValidationError

if TYPE_CHECKING:
    from .extension import AccessTokens

blueprint = Blueprint("accesstokens_api", __name__)

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100
#: Far past any real list; keeps the offset a small integer for every database.
MAX_PAGE = 1_000_000
CREATE_FIELDS = frozenset({"name", "scopes", "expires_at"})
ROTATE_FIELDS = frozenset({"grace"})
LIST_PARAMETERS = frozenset({"pagelen", "state", "never_used", "last_used_before", "q"})

#: Workspace, project and repository names in management URLs, as Bitbucket
#: allows them. The OpenAPI document states the same pattern.
SLUG = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}", re.ASCII)

#: The three kinds of resource; the view arguments name the resource's parts.
RESOURCE_RULES = (
    ("repository", "/repositories/<workspace>/<repo_slug>"),
    ("project", "/workspaces/<workspace>/projects/<project_key>"),
    ("workspace", "/workspaces/<workspace>"),
)


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


def _extension() -> AccessTokens:
    return current_app.extensions["accesstokens"]  # type: ignore[no-any-return]


def _store() -> TokenStore:
    return _extension().state().store


# -- guards -------------------------------------------------------------------


@blueprint.before_request
def refuse_access_tokens() -> None:
    """Tokens cannot create, see, rotate or revoke tokens: a leaked token must
    not be able to mint more of itself. Checked before the app is asked."""
    if request.endpoint == "accesstokens_api.openapi":
        return
    if carries_token(request):
        fail(403, "Access tokens cannot manage access tokens. Sign in as a user instead.")
    if not query_is_utf8(request):
        fail(400, "The query string is not valid UTF-8.")


@blueprint.errorhandler(SQLAlchemyError)
def storage_error(error: SQLAlchemyError) -> Response:
    """The database failed: nothing was changed, say so without a 500 page."""
    _extension().state().db.session.rollback()
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


def _resource(view_args: Mapping[str, str]) -> Resource:
    """The resource the URL names. Names that are not slugs get a 404 before
    the app is asked about them: no resource has them, and the document
    promises the pattern."""
    names = (view_args.get("workspace"), view_args.get("project_key"), view_args.get("repo_slug"))
    for name in names:
        if name is not None and not SLUG.fullmatch(name):
            fail(404, "No such resource.")
    workspace, project, repository = names
    return Resource.of(workspace or "", project, repository)


def _manager(resource: Resource) -> str:
    """The signed-in user allowed to manage tokens here, or a 403."""
    manager = _extension().manager_of(resource)
    if manager is None:
        fail(403, "You do not have permission to manage access tokens of this resource.")
    return manager


def _token_of(resource: Resource, token_id: str) -> AccessToken:
    """The token, if it exists and is bound to exactly this resource. Another
    resource's token gets the same 404 as none at all."""
    token = _store().get(token_id)
    if token is None or (token.type, token.workspace, token.project, token.repository) != (
        resource.type,
        resource.workspace,
        resource.project,
        resource.repository,
    ):
        fail(404, "No such access token on this resource.")
    return token


def _json_body(allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object a POST sends. ``application/json`` only: a cross-site
    form cannot send it without a CORS preflight."""
    if request.mimetype != "application/json":
        fail(415, "Send a JSON body with 'Content-Type: application/json'.")
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        invalid({}, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        invalid({}, "The request body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        invalid({name: "unknown field" for name in unknown})
    return body


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 datetime with a timezone, as aware UTC. ``ValueError`` says
    what is wrong. Naive datetimes are refused rather than guessed at."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 datetime string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not take "Z"
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 datetime, e.g. 2030-01-31T12:00:00Z") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a timezone, e.g. 'Z' or '+02:00'")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is out of range") from None


# -- routes -------------------------------------------------------------------


def create(**view_args: str) -> tuple[Response, int, dict[str, str]]:
    resource = _resource(view_args)
    manager = _manager(resource)
    refusal = _extension().plan_refusal(resource)
    if refusal is not None:
        allowed = _extension().allowed_token_types(resource.workspace)
        fail(403, refusal, detail={"allowed_types": list(allowed)})
    body = _json_body(CREATE_FIELDS)
    errors: dict[str, str] = {}
    name: Any = body.get("name")
    if not isinstance(name, str):
        errors["name"] = "required, a string"
    scopes: Any = body.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        errors["scopes"] = "required, a list of scope names"
    expires_at = None
    if body.get("expires_at") is not None:
        try:
            expires_at = parse_datetime(body["expires_at"])
        except ValueError as e:
            errors["expires_at"] = str(e)
    if errors:
        invalid(errors)
    try:
        new = _store().create(
            name=name,
            workspace=resource.workspace,
            project=resource.project,
            repository=resource.repository,
            scopes=scopes,
            created_by=manager,
            expires_at=expires_at,
        )
    except TokenValidationError as e:
        invalid({e.field: e.message})
    location = _url("get", resource, token_id=new.token.id)
    return jsonify(new_token_json(new.secret, new.token)), 201, {"Location": location}


def list_tokens(**view_args: str) -> Response:
    resource = _resource(view_args)
    _manager(resource)
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
    found = _store().search(
        resource.workspace,
        resource.project,
        resource.repository,
        state=state,
        q=q,
        never_used=never_used == "true",
        last_used_before=last_used_before,
        page=page,
        pagelen=pagelen,
    )
    result: dict[str, Any] = {
        "values": [token_json(token) for token in found.items],
        "page": page,
        "pagelen": pagelen,
        "size": found.total,
    }
    if page * pagelen < found.total:
        result["next"] = _page_url(page + 1)
    if page > 1:
        result["previous"] = _page_url(page - 1)
    return jsonify(result)


def get(token_id: str, **view_args: str) -> Response:
    resource = _resource(view_args)
    _manager(resource)
    return jsonify(token_json(_token_of(resource, token_id)))


def revoke(token_id: str, **view_args: str) -> tuple[str, int]:
    resource = _resource(view_args)
    manager = _manager(resource)
    token = _token_of(resource, token_id)
    _store().revoke(token.id, revoked_by=manager)
    return "", 204


def rotate(token_id: str, **view_args: str) -> tuple[Response, int]:
    resource = _resource(view_args)
    manager = _manager(resource)
    token = _token_of(resource, token_id)
    body = _json_body(ROTATE_FIELDS)
    grace = None
    if "grace" in body:
        seconds = body["grace"]
        limit = int(MAX_ROTATION_GRACE.total_seconds())
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= limit:
            invalid({"grace": f"seconds the old secret keeps working, 0 to {limit}"})
        grace = timedelta(seconds=seconds)
    if not token.is_active:
        fail(409, f"A {token.state} access token cannot be rotated; create a new one.")
    try:
        new = _store().rotate(token.id, rotated_by=manager, grace=grace)
    except TokenValidationError as e:
        if e.field == "token":  # revoked or expired since we looked
            fail(409, f"This access token cannot be rotated: {e.message}.")
        invalid({e.field: e.message})
    if new is None:  # deleted since we looked
        fail(404, "No such access token on this resource.")
    return jsonify(new_token_json(new.secret, new.token)), 201


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
    # Only our own parameters: anything else could clash with url_for's
    # arguments (``_external``, ``workspace``) or smuggle values into the link.
    values: dict[str, Any] = {k: v for k, v in request.args.lists() if k in LIST_PARAMETERS}
    values.update(request.view_args or {}, page=page)
    return url_for(request.endpoint or "", _external=True, **values)


def _url(action: str, resource: Resource, **values: str) -> str:
    return url_for(f".{resource.type}_{action}", **_view_args(resource), **values, _external=True)


def _view_args(resource: Resource) -> dict[str, str]:
    if resource.type == "repository":
        assert resource.repository is not None
        return {"workspace": resource.workspace, "repo_slug": resource.repository}
    if resource.type == "project":
        assert resource.project is not None
        return {"workspace": resource.workspace, "project_key": resource.project}
    return {"workspace": resource.workspace}


for _kind, _path in RESOURCE_RULES:
    _base = f"{_path}/access-tokens"
    blueprint.add_url_rule(_base, f"{_kind}_create", create, methods=["POST"])
    blueprint.add_url_rule(_base, f"{_kind}_list", list_tokens, methods=["GET"])
    blueprint.add_url_rule(f"{_base}/<token_id>", f"{_kind}_get", get, methods=["GET"])
    blueprint.add_url_rule(f"{_base}/<token_id>", f"{_kind}_revoke", revoke, methods=["DELETE"])
    blueprint.add_url_rule(
        f"{_base}/<token_id>/rotate", f"{_kind}_rotate", rotate, methods=["POST"]
    )


# -- the OpenAPI document ---------------------------------------------------------


@cache
def _document() -> str:
    return (importlib_resources.files(__package__) / "openapi.json").read_text("utf-8")


@blueprint.get("/access-tokens/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API, as mounted in this app: its server
    URL is the blueprint's prefix and its scope lists the app's catalog."""
    document = json.loads(_document())
    prefix = request.path.removesuffix("/access-tokens/openapi.json")
    document["servers"] = [{"url": request.script_root + prefix}]
    catalog = _extension().scopes
    schemas = document["components"]["schemas"]
    schemas["Scope"]["enum"] = [scope.name for scope in catalog]
    for kind, _ in RESOURCE_RULES:
        allowed = [scope.name for scope in catalog.allowed_for(kind)]
        schemas[f"{kind.capitalize()}Scope"]["enum"] = allowed
    response = jsonify(document)
    response.headers["Cache-Control"] = "no-cache"
    return response
