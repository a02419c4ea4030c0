"""The admin pages: Bitbucket's "Access tokens" settings page for a
repository, project or workspace, and an overview of a whole workspace.

Plain HTML forms, so everything works with JavaScript off. Every form carries
a Flask-WTF CSRF token. A secret is shown once, in the response to the POST
that made it, and never leaves the server otherwise: not in a URL, not in the
session (a cookie, with Flask's default session), not in the database. As
that response is the result of a POST, the create and rotate forms also carry
a one-time form id (``formids``), remembered in the session; a reload or a
back-and-forward that submits the form again finds it used up, creates nothing
and lands on the token list with a notice. Templates live under ``accesstokens/``; override
``accesstokens/base.html`` to put the pages inside your own layout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from typing import TypeVar

from flask import abort
from flask import current_app
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import formids
from .adminguards import check_csrf
from .adminguards import csrf_field
from .adminguards import first_submission
from .adminguards import frame_same_site_only
from .adminguards import no_store
from .adminhelpers import expires_soon
from .adminhelpers import expiry_bounds
from .adminhelpers import format_time
from .adminhelpers import git_path
from .adminhelpers import implied_labels
from .adminhelpers import level_label
from .adminhelpers import parse_expiry
from .adminhelpers import public_url
from .adminhelpers import resource_url
from .adminhelpers import scope_groups
from .adminhelpers import scope_labels
from .adminhelpers import token_self_url
from .adminhelpers import token_url
from .adminhelpers import works_on
from .errors import PlanRestriction
from .errors import TokenConflict
from .errors import TokenValidationError
from .errors import UnknownResource
from .models import AccessToken
from .models import utcnow
from .resources import Resource
from .service import STATES
from .service import TokenService
from .servicebase import resource_of
from .signin import unauthorized_response
from .state import app_state
from .web import describe
from .web import LazyBlueprint
from .web import refuse_tokens_and_bad_queries
from .web import require_manager
from .web import resource_from_view_args
from .web import resource_rules

try:
    from flask_wtf.csrf import generate_csrf  # type: ignore[import-untyped]
except ModuleNotFoundError as e:  # re-raised as a plain ImportError, which init_app lets through
    raise ImportError(
        "The access-token admin pages need Flask-WTF for CSRF protection: "
        "pip install 'Flask-AccessTokens[admin]'"
    ) from e

F = TypeVar("F", bound=Callable[..., Any])

blueprint = LazyBlueprint(
    "accesstokens_admin",
    __name__,
    template_folder="templates",
    static_folder="static",
    # Not "/static": with an empty URL prefix that would collide with the app's.
    static_url_path="/accesstokens-static",
)

PAGELEN = 50
#: The largest form body the pages read, like the JSON API's bound.
MAX_FORM_BODY = 64 * 1024


#: (suffix, methods, view) of the pages every level of the model gets.
_RESOURCE_VIEWS: list[tuple[str, list[str], Callable[..., Any]]] = []


def _resource_route(suffix: str, methods: list[str]) -> Callable[[F], F]:
    """Serve one view at the same place under every level's URL."""

    def decorator(view: F) -> F:
        _RESOURCE_VIEWS.append((suffix, methods, view))
        return view

    return decorator


@blueprint.record
def _mount_model(setup: BlueprintSetupState) -> None:
    """Each app mounts the pages of its own model's levels, at the JSON
    API's paths, and the overview of its top level."""
    model = app_state(setup.app).model  # type: ignore[arg-type]
    for _, rule in resource_rules(model):
        for suffix, methods, view in _RESOURCE_VIEWS:
            setup.add_url_rule(f"{rule}/access-tokens{suffix}", view_func=view, methods=methods)
    top = model.levels[0].name
    setup.add_url_rule(f"{model.path(top)}/access-tokens/all", view_func=overview, methods=["GET"])


# -- guards (adminguards.py) ---------------------------------------------------

blueprint.after_app_request(frame_same_site_only)
blueprint.after_app_request(no_store)


@blueprint.before_request
def _refuse_tokens() -> None:
    refuse_tokens_and_bad_queries(
        "Access tokens cannot be used to manage access tokens. Sign in instead."
    )
    # The forms are a few short fields: a bigger body (a multipart upload
    # spooled to disk, say) is refused with 413 before it is read.
    request.max_content_length = MAX_FORM_BODY


def _service() -> TokenService:
    return TokenService.of(current_app)


def _managed() -> tuple[Resource, str]:
    resource = resource_from_view_args(request.view_args)
    try:
        return resource, require_manager(resource)
    except Forbidden:
        answer = unauthorized_response(resource)  # e.g. the app's sign-in page
        if answer is not None:
            abort(answer)
        raise


def _token_of(resource: Resource, token_id: str) -> AccessToken:
    """The token, if it is bound to exactly this resource; 404 otherwise, so
    ids of other resources' tokens look like ids that do not exist."""
    token = _service().get_on(resource, token_id)
    if token is None:
        abort(404, "There is no such access token here.")
    return token


def _plan_refusal(resource: Resource) -> str | None:
    return _service().plan_refusal(resource)


def _already_submitted(resource: Resource) -> Response:
    return redirect(resource_url("list_tokens", resource, notice="resubmitted"), 303)


@blueprint.errorhandler(400)
@blueprint.errorhandler(403)
@blueprint.errorhandler(404)
def _error_page(error: HTTPException) -> tuple[str, int]:
    return render_template("accesstokens/error.html", error=error), error.code or 500


@blueprint.context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "csrf_field": csrf_field(),
        "csrf_token": generate_csrf,
        "issue_form_id": formids.issue,
        "token_self_url": token_self_url,
        "resource_url": resource_url,
        "token_url": token_url,
        "resource_of": resource_of,
        "format_time": format_time,
        "public_url": public_url,
        "scope_labels": scope_labels,
        "implied_labels": implied_labels,
        "expires_soon": expires_soon,
        "describe": describe,
        "level_label": level_label,
        "works_on": works_on,
        "git_path": git_path,
        "is_top": lambda resource: resource.type == app_state().model.levels[0].name,
    }


def _page_arg() -> int:
    page = request.args.get("page", "1")
    ok = page.isascii() and page.isdigit()  # "²".isdigit() is True too
    return int(page) if ok and 0 < int(page) < 1_000_000 else 1


def _reveal(resource: Resource, token: AccessToken, secret: str, action: str) -> Response:
    """The one response that ever carries the secret."""
    response = make_response(
        render_template(
            "accesstokens/reveal.html",
            resource=resource,
            token=token,
            secret=secret,
            action=action,
            origin=request.host_url.rstrip("/"),
            host=request.host,
            scheme=request.scheme,
        )
    )
    # Neither the browser nor any proxy may keep a copy of it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# -- pages of one resource ---------------------------------------------------


@_resource_route("", ["GET"])
def list_tokens(**view_args: str) -> str:
    resource, _ = _managed()
    page = _service().search(
        resource,
        page=_page_arg(),
        pagelen=PAGELEN,
    )
    changed = _service().get_on(resource, request.args.get("changed", ""))
    return render_template(
        "accesstokens/list.html",
        resource=resource,
        page=page,
        has_next=page.page * page.pagelen < page.total,
        refusal=_plan_refusal(resource),
        changed=changed,
        action=request.args.get("action"),
        notice=request.args.get("notice"),
    )


def _render_form(
    resource: Resource, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    first, last = expiry_bounds()
    return (
        render_template(
            "accesstokens/new.html",
            resource=resource,
            refusal=_plan_refusal(resource),
            groups=scope_groups(resource.type, values.get("scopes", [])),
            values=values,
            errors=errors,
            expiry_min=first,
            expiry_max=last,
            expiry_required=app_state().settings.max_lifetime is not None,
        ),
        status,
    )


@_resource_route("/new", ["GET"])
def new_token(**view_args: str) -> tuple[str, int]:
    resource, _ = _managed()
    return _render_form(resource, {}, {})


@_resource_route("/new", ["POST"])
def create_token(**view_args: str) -> Response | tuple[str, int]:
    resource, user = _managed()
    check_csrf()
    refusal = _plan_refusal(resource)
    if refusal is not None:
        abort(403, refusal)
    if not first_submission():
        return _already_submitted(resource)
    form = request.form
    name = form.get("name", "")
    scopes = form.getlist("scopes")
    expiry = form.get("expires_at", "")
    allowed = form.get("allowed_ips", "")
    # A canary grants nothing and never expires: scopes and expiry are moot.
    canary = form.get("canary") == "1"
    values = {
        "name": name,
        "scopes": scopes,
        "expires_at": expiry,
        "allowed_ips": allowed,
        "canary": canary,
    }
    # One network per line (commas and spaces also separate); empty: anywhere.
    allowed_ips = allowed.replace(",", " ").split() or None
    # Check each field on its own first, so every error shows at once.
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "Give the token a name."
    if not scopes and not canary:
        errors["scopes"] = "Choose at least one scope."
    expires_at = None
    if not canary:
        try:
            expires_at = _service().check_expiry(parse_expiry(expiry), utcnow())
        except TokenValidationError as e:
            errors[e.field] = e.message
    if not errors:
        try:
            if canary:
                new = _service().create_on(resource, canary=True, name=name, created_by=user)
            else:
                new = _service().create_on(
                    resource,
                    name=name,
                    scopes=scopes,
                    created_by=user,
                    expires_at=expires_at,
                    allowed_ips=allowed_ips,
                )
        except UnknownResource as e:
            abort(404, e.message)
        except PlanRestriction as e:
            abort(403, e.message)
        except TokenValidationError as e:
            errors[e.field] = e.message
        else:
            return _reveal(resource, new.token, new.secret, "created")
    # The form is shown again with a new form id: the one just used is gone.
    return _render_form(resource, values, errors, 400)


def _confirm(resource: Resource, token: AccessToken, action: str, **extra: Any) -> str:
    return render_template(
        "accesstokens/confirm.html",
        resource=resource,
        token=token,
        action=action,
        refusal=_plan_refusal(resource) if action == "rotate" else None,
        **extra,
    )


@_resource_route("/<token_id>/revoke", ["GET"])
def confirm_revoke(token_id: str, **view_args: str) -> str:
    resource, _ = _managed()
    return _confirm(resource, _token_of(resource, token_id), "revoke")


@_resource_route("/<token_id>/revoke", ["POST"])
def revoke(token_id: str, **view_args: str) -> Response:
    resource, user = _managed()
    check_csrf()
    token = _token_of(resource, token_id)
    _service().revoke(token.id, user)
    return redirect(resource_url("list_tokens", resource, changed=token.id, action="revoked"), 303)


@_resource_route("/<token_id>/rotate", ["GET"])
def confirm_rotate(token_id: str, **view_args: str) -> str:
    resource, _ = _managed()
    return _confirm(resource, _token_of(resource, token_id), "rotate")


@_resource_route("/<token_id>/rotate", ["POST"])
def rotate(token_id: str, **view_args: str) -> Response | tuple[str, int]:
    resource, user = _managed()
    check_csrf()
    token = _token_of(resource, token_id)
    refusal = _plan_refusal(resource)
    if refusal is not None:
        abort(403, refusal)
    if not first_submission():
        return _already_submitted(resource)
    # Only the usage page's "Rotate with only the scopes it used" sends scopes.
    narrowed = request.form.getlist("scopes") or None
    try:
        new = _service().rotate(token.id, user, scopes=narrowed)
    except TokenConflict as e:
        return _confirm(resource, token, "rotate", error=e.message), 409
    except PlanRestriction as e:
        abort(403, e.message)
    except TokenValidationError as e:
        return _confirm(resource, token, "rotate", error=f"Scopes: {e.message}"), 400
    if new is None:  # pruned since we looked
        abort(404, "There is no such access token here.")
    return _reveal(resource, new.token, new.secret, "rotated")


@_resource_route("/<token_id>/usage", ["GET"])
def token_usage(token_id: str, **view_args: str) -> str:
    """What the token was observed to need, what it never needed, and the
    narrowing rotation that follows."""
    resource, _ = _managed()
    token = _token_of(resource, token_id)
    usage = _service().usage(token.id)
    if usage is None:  # pruned since we looked
        abort(404, "There is no such access token here.")
    return render_template(
        "accesstokens/usage.html",
        resource=resource,
        token=token,
        usage=usage,
        refusal=_plan_refusal(resource),
    )


# -- the workspace overview ---------------------------------------------------


def overview(**view_args: str) -> tuple[str, int]:
    """Every token in a top-level resource (a workspace, an organization),
    for its admins: find what is unused."""
    resource, _ = _managed()
    args = request.args
    token_type = args.get("type", "")
    state = args.get("state", "")
    never_used = args.get("never_used") == "1"
    days = args.get("unused_days", "").strip()
    filters = {"type": token_type, "state": state, "never_used": never_used, "unused_days": days}
    errors: dict[str, str] = {}
    levels = app_state().model.names
    if token_type not in ("", *levels):
        errors["type"] = f"must be one of {', '.join(levels)}"
    if state not in ("", *STATES):
        errors["state"] = f"must be one of {', '.join(STATES)}"
    last_used_before = None
    if days:
        if not (days.isascii() and days.isdigit()) or not 0 < int(days) <= 36500:
            errors["unused_days"] = "must be a whole number of days, from 1 to 36500"
        else:
            last_used_before = utcnow() - timedelta(days=int(days))
    page = None
    if not errors:
        page = _service().search(
            resource,
            exact=False,
            token_type=token_type or None,
            state=state or None,
            never_used=never_used,
            last_used_before=last_used_before,
            page=_page_arg(),
            pagelen=PAGELEN,
        )
    query = {k: v for k, v in args.items() if k != "page"}
    return (
        render_template(
            "accesstokens/overview.html",
            resource=resource,
            page=page,
            has_next=page is not None and page.page * page.pagelen < page.total,
            filters=filters,
            errors=errors,
            query=query,
            token_types=levels,
            states=STATES,
        ),
        400 if errors else 200,
    )
