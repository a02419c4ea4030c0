"""The JSON API of the OIDC exchange: ``POST {prefix}/access-tokens/oidc/exchange``
for CI jobs, and ``{prefix}R/trust-policies`` for the resource's managers.

The routes join the management API's blueprint (``api.py``) when
``init_app`` mounts it, so they share its guards: tokens cannot manage
policies, bodies are bounded JSON, errors are Bitbucket-shaped and a
database failure is a 503. The exchange needs no credentials but the ID
token; every refusal carries ``error.code`` and nothing is minted.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any
from typing import NoReturn

from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from .api import APIError
from .api import blueprint
from .api import invalid
from .api import json_body
from .api import MAX_BODY
from .api import TOKEN_ENDPOINTS
from .decorators import carries_token
from .errors import PlanRestriction
from .errors import TokenValidationError
from .errors import UnknownResource
from .oidc import Refusal
from .ratelimit import Throttle
from .resources import Resource
from .serialize import new_token_json
from .serialize import policy_json
from .service import TokenService
from .state import app_state
from .trustmodels import TrustPolicy
from .trustpolicy import MAX_LIFETIME
from .web import require_manager
from .web import resource_args
from .web import resource_from_view_args
from .web import resource_rules

POLICY_FIELDS = frozenset({"issuer", "claims", "scopes", "lifetime"})
EXCHANGE_FIELDS = frozenset({"token", "scopes"})
#: ``app.extensions`` key of the app's exchange throttle.
THROTTLE_KEY = "accesstokens.oidc_exchange"
_throttle_lock = threading.Lock()

TOKEN_ENDPOINTS.add("accesstokens_api.oidc_exchange")


def _service() -> TokenService:
    return TokenService.of(current_app)


def refuse(status: int, code: str, message: str, **headers: str) -> NoReturn:
    """An exchange refusal: Bitbucket's shape, with ``error.code``."""
    error = APIError(status, message, code=code)
    assert error.response is not None
    error.response.headers.update(headers)
    raise error


# -- trust policies of a resource ---------------------------------------------------------


def _managed(view_args: dict[str, str]) -> tuple[Resource, str]:
    resource = resource_from_view_args(view_args)
    return resource, require_manager(resource)


def _policy_on(resource: Resource, policy_id: str) -> TrustPolicy:
    policy = _service().get_trust_policy(policy_id)
    if policy is None or (policy.type, policy.resource_key) != (resource.type, resource.key):
        raise APIError(404, "No such trust policy on this resource.")
    return policy


def create_policy(**view_args: str) -> tuple[Response, int, dict[str, str]]:
    resource, manager = _managed(view_args)
    body = json_body(POLICY_FIELDS)
    errors: dict[str, str] = {}
    issuer: Any = body.get("issuer")
    if not isinstance(issuer, str):
        errors["issuer"] = "required, the name of a configured issuer"
    claims: Any = body.get("claims")
    if not isinstance(claims, dict):
        errors["claims"] = "required, an object of claim names to values"
    scopes: Any = body.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        errors["scopes"] = "required, a list of scope names"
    seconds: Any = body.get("lifetime", 900)
    limit = int(MAX_LIFETIME.total_seconds())
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 < seconds <= limit:
        errors["lifetime"] = f"seconds a minted token lives, 1 to {limit}"
    if errors:
        invalid(errors)
    try:
        policy = _service().create_trust_policy(
            resource=resource,
            issuer=issuer,
            claims=claims,
            scopes=scopes,
            lifetime=timedelta(seconds=seconds),
            created_by=manager,
        )
    except UnknownResource as e:
        raise APIError(404, e.message) from None
    except PlanRestriction as e:
        raise APIError(403, e.message, detail={"allowed_types": list(e.allowed_types)}) from None
    except TokenValidationError as e:
        invalid({e.field: e.message})
    location = url_for(
        f".{resource.type}_policy_get",
        **resource_args(resource),
        policy_id=policy.id,
        _external=True,
    )
    return jsonify(policy_json(policy)), 201, {"Location": location}


def list_policies(**view_args: str) -> Response:
    resource, _ = _managed(view_args)
    policies = _service().list_trust_policies(resource)
    return jsonify({"values": [policy_json(p) for p in policies], "size": len(policies)})


def get_policy(policy_id: str, **view_args: str) -> Response:
    resource, _ = _managed(view_args)
    return jsonify(policy_json(_policy_on(resource, policy_id)))


def delete_policy(policy_id: str, **view_args: str) -> tuple[str, int]:
    resource, manager = _managed(view_args)
    policy = _policy_on(resource, policy_id)
    _service().delete_trust_policy(policy.id, deleted_by=manager)
    return "", 204


@blueprint.record
def _mount_model(setup: BlueprintSetupState) -> None:
    """The trust policies of each level of the app's model, beside its tokens."""
    for kind, path in resource_rules(app_state(setup.app).model):  # type: ignore[arg-type]
        base = f"{path}/trust-policies"
        setup.add_url_rule(base, f"{kind}_policy_create", create_policy, methods=["POST"])
        setup.add_url_rule(base, f"{kind}_policy_list", list_policies, methods=["GET"])
        setup.add_url_rule(f"{base}/<policy_id>", f"{kind}_policy_get", get_policy)
        setup.add_url_rule(
            f"{base}/<policy_id>", f"{kind}_policy_delete", delete_policy, methods=["DELETE"]
        )


# -- the exchange ---------------------------------------------------------------------------


def _throttle() -> Throttle:
    """The app's exchange throttle, made on first use."""
    extensions = current_app.extensions
    throttle: Throttle | None = extensions.get(THROTTLE_KEY)
    if throttle is None:
        with _throttle_lock:
            throttle = extensions.get(THROTTLE_KEY)
            if throttle is None:
                settings = app_state().settings
                throttle = extensions[THROTTLE_KEY] = Throttle(
                    settings.oidc_exchange_limit, settings.ratelimit_storage_uri, THROTTLE_KEY
                )
    return throttle


def _exchange_body() -> tuple[object, list[str] | None]:
    """The ID token and the scopes asked for, or a refusal with a code."""
    if request.mimetype != "application/json":
        refuse(
            415, "unsupported-media-type", "Send a JSON body with 'Content-Type: application/json'."
        )
    length = request.content_length
    if length is not None and length > MAX_BODY:
        refuse(413, "body-too-large", f"The request body must be at most {MAX_BODY} bytes.")
    raw = request.stream.read(MAX_BODY + 1)
    while len(raw) <= MAX_BODY and (more := request.stream.read(MAX_BODY + 1 - len(raw))):
        raw += more
    if len(raw) > MAX_BODY:
        refuse(413, "body-too-large", f"The request body must be at most {MAX_BODY} bytes.")
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError):
        refuse(400, "invalid-request", "The request body is not valid JSON.")
    if not isinstance(body, dict) or not set(body) <= EXCHANGE_FIELDS:
        refuse(400, "invalid-request", 'Send {"token": <ID token>, "scopes"?: [...]}.')
    scopes: Any = body.get("scopes")
    if scopes is not None and (
        not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
    ):
        refuse(400, "invalid-scopes", "'scopes' must be a list of scope names.")
    return body.get("token"), scopes


@blueprint.post("/access-tokens/oidc/exchange", endpoint="oidc_exchange")
def exchange() -> tuple[Response, int]:
    """A CI job's ID token for a short-lived token of its policy's resource."""
    retry_after = _throttle().hit(request.remote_addr)
    if retry_after is not None:
        refuse(
            429,
            "throttled",
            "Too many exchanges. Try again later.",
            **{"Retry-After": str(retry_after)},
        )
    if carries_token():
        refuse(400, "invalid-request", "Send the ID token alone, without an access token.")
    id_token, scopes = _exchange_body()
    try:
        new = _service().exchange(id_token, scopes)
    except Refusal as e:
        headers = {"Retry-After": "60"} if e.status == 503 else {}
        refuse(e.status, e.code, e.message, **headers)
    response = jsonify(new_token_json(new.secret, new.token))
    response.headers["Cache-Control"] = "no-store"
    return response, 201
