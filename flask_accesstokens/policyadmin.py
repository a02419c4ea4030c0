"""The admin pages of trust policies: beside a resource's access tokens, the
CI jobs that may exchange an OIDC ID token for one.

The pages join the admin blueprint (``admin.py``) when ``init_app`` mounts
it, so they share its guards: a signed-in manager only, a CSRF token on
every form, no access tokens, no-store and same-site framing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from werkzeug.wrappers import Response

from .admin import _managed
from .admin import _resource_route
from .adminguards import check_csrf
from .adminhelpers import resource_url
from .adminhelpers import scope_groups
from .errors import PlanRestriction
from .errors import TokenValidationError
from .errors import UnknownResource
from .resources import Resource
from .service import TokenService
from .state import app_state
from .trustpolicy import DEFAULT_LIFETIME
from .trustpolicy import MAX_LIFETIME


def _service() -> TokenService:
    return TokenService.of(current_app)


def parse_claims(text: str) -> dict[str, str]:
    """``name=value`` lines; the value is taken whole (``refs/heads/main``)."""
    claims: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise TokenValidationError("claims", f"line {number}: write name=value")
        claims[name.strip()] = value.strip()
    return claims


def _render(
    resource: Resource, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    return (
        render_template(
            "accesstokens/policies.html",
            resource=resource,
            policies=_service().list_trust_policies(resource),
            issuers=sorted(app_state().settings.oidc_issuers),
            groups=scope_groups(resource.type, values.get("scopes", [])),
            values=values,
            errors=errors,
            max_minutes=int(MAX_LIFETIME.total_seconds() // 60),
            notice=request.args.get("notice"),
        ),
        status,
    )


@_resource_route("/trust-policies", ["GET"])
def trust_policies(**view_args: str) -> tuple[str, int]:
    resource, _ = _managed()
    default = int(DEFAULT_LIFETIME.total_seconds() // 60)
    return _render(resource, {"lifetime": str(default)}, {})


@_resource_route("/trust-policies", ["POST"])
def create_trust_policy(**view_args: str) -> Response | tuple[str, int]:
    resource, user = _managed()
    check_csrf()
    form = request.form
    values: dict[str, Any] = {
        "issuer": form.get("issuer", ""),
        "claims": form.get("claims", ""),
        "scopes": form.getlist("scopes"),
        "lifetime": form.get("lifetime", ""),
    }
    errors: dict[str, str] = {}
    minutes = form.get("lifetime", "").strip()
    lifetime = DEFAULT_LIFETIME
    if not (
        minutes.isascii() and minutes.isdigit() and len(minutes) <= 2 and 0 < int(minutes) <= 60
    ):
        errors["lifetime"] = "Give whole minutes, from 1 to 60."
    else:
        lifetime = timedelta(minutes=int(minutes))
    claims: dict[str, str] = {}
    try:
        claims = parse_claims(form.get("claims", ""))
    except TokenValidationError as e:
        errors[e.field] = e.message
    if not errors:
        try:
            _service().create_trust_policy(
                resource=resource,
                issuer=form.get("issuer", ""),
                claims=claims,
                scopes=values["scopes"],
                lifetime=lifetime,
                created_by=user,
            )
        except UnknownResource as e:
            abort(404, e.message)
        except PlanRestriction as e:
            abort(403, e.message)
        except TokenValidationError as e:
            errors[e.field] = e.message
        else:
            return redirect(resource_url("trust_policies", resource, notice="added"), 303)
    return _render(resource, values, errors, 400)


@_resource_route("/trust-policies/<policy_id>/delete", ["POST"])
def delete_trust_policy(policy_id: str, **view_args: str) -> Response:
    resource, user = _managed()
    check_csrf()
    policy = _service().get_trust_policy(policy_id)
    if policy is None or (policy.type, policy.resource_key) != (resource.type, resource.key):
        abort(404, "There is no such trust policy here.")
    _service().delete_trust_policy(policy.id, user)
    return redirect(resource_url("trust_policies", resource, notice="removed"), 303)
