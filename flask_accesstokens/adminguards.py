"""What protects the admin pages: CSRF and one-time form ids on every form
that changes something, and on every answer, headers that keep it out of
other sites' frames and out of every cache."""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.wrappers import Response

from . import formids
from .adminhelpers import BLUEPRINT
from .state import app_state

try:
    from flask_wtf.csrf import validate_csrf  # type: ignore[import-untyped]
    from wtforms.validators import ValidationError  # type: ignore[import-untyped]
except ModuleNotFoundError as e:  # re-raised as a plain ImportError, which init_app lets through
    raise ImportError(
        "The access-token admin pages need Flask-WTF for CSRF protection: "
        "pip install 'Flask-AccessTokens[admin]'"
    ) from e


def frame_same_site_only(response: Response) -> Response:
    """Apps may embed the pages in their own (same-site) frames; other sites
    may not, so a confirm button cannot be clickjacked. Both headers, on
    every answer of the pages, errors included: ``X-Frame-Options`` for old
    browsers, CSP ``frame-ancestors`` for the rest. An app's own policy is
    kept; ours is added beside it, and browsers enforce both."""
    if not is_admin_request():
        return response
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    policies = response.headers.getlist("Content-Security-Policy")
    if not any("frame-ancestors" in policy for policy in policies):
        response.headers.add("Content-Security-Policy", "frame-ancestors 'self'")
    return response


def no_store(response: Response) -> Response:
    """Every answer of the pages, errors included, is private: lists show
    clients' addresses, user agents, allow lists and creators, and one page
    shows a secret. No browser or shared cache may keep any of them. The
    stylesheet is no one's data and stays cacheable."""
    if is_admin_request() and request.endpoint != f"{BLUEPRINT}.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def is_admin_request() -> bool:
    """Whether this request was for an admin page, also when routing failed
    on the method (a 405 has no blueprint)."""
    if request.blueprint == BLUEPRINT:
        return True
    prefix = app_state().settings.admin_url_prefix
    if prefix is not None and request.path.startswith(prefix + "/"):
        return True  # a URL no page has (a name no resource can have): 404
    error = request.routing_exception
    if not isinstance(error, MethodNotAllowed) or not error.valid_methods:
        return False
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return False
    try:
        endpoint, _ = adapter.match(method=next(iter(error.valid_methods)))
    except HTTPException:
        return False
    return isinstance(endpoint, str) and endpoint.startswith(f"{BLUEPRINT}.")


def check_csrf() -> None:
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    try:
        validate_csrf(request.form.get(csrf_field()))
    except ValidationError:
        abort(
            400,
            "This form expired or did not come from this site. "
            "Go back, reload the page and try again.",
        )


def csrf_field() -> str:
    return str(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"))


def first_submission() -> bool:
    """Use up the form id this POST carries. False when it was used already:
    the browser is sending the form again (a reload of the page that showed
    the secret, or back and forward), not the user. A form id this server
    never issued is a script posting the form: 400, saying nothing was made."""
    submission = formids.use(request.form.get("form_id", ""))
    if submission == "foreign":
        abort(400, FOREIGN_FORM)
    return submission == "first"


FOREIGN_FORM = (
    "Nothing was created: this form was not opened from this site's page (its one-time "
    "form id is missing or was never issued here). Open the page and submit it from "
    "there, or have scripts use the JSON API (POST .../access-tokens with a JSON body)."
)
