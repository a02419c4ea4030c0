"""Signing in: the app's own session login with hashed passwords.

Access tokens are for machines and never sign in: a request that carries one
is refused here before any form field is read, and no session is started.
Forms are protected by Flask-WTF's ``CSRFProtect`` (see ``extensions.py``).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from typing import Any
from typing import cast
from typing import TypeVar
from urllib.parse import urlsplit

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

from . import signin
from .extensions import db
from .models import find_user
from .models import User

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

# Checked against when the username is unknown, so timing does not tell which names exist.
_DUMMY_HASH = generate_password_hash("not a password")

#: A longer name typed into the form is not shown back whole.
MAX_USERNAME_SHOWN = 150

#: Longer ``next`` targets are not links anyone clicked; they go home instead.
MAX_NEXT_LENGTH = 2048


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def current_user() -> User | None:
    """The signed-in user of this request, or None."""
    if "current_user" not in g:
        user_id = session.get("user_id")
        g.current_user = db.session.get(User, user_id) if user_id is not None else None
    return cast("User | None", g.current_user)


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def _is_blank_or_control(char: str) -> bool:
    # Cc: controls (tab, CR, LF, which URL parsers silently drop), Cf: invisible
    # format characters, Z*: every kind of space and line separator.
    return unicodedata.category(char)[0] == "Z" or unicodedata.category(char) in ("Cc", "Cf")


def local_redirect_target(target: str | None) -> str | None:
    """``target`` as the ``Location`` it would become, if that is a path on this
    site; else None.

    An open redirect after sign-in is a phishing aid. The check runs on the
    URL the redirect really sends, after Werkzeug's IRI-to-URI conversion,
    whose URL parsing drops tabs and newlines: ``/<TAB>/evil.example`` would
    otherwise become ``//evil.example``. Anything with whitespace, control
    characters or backslashes (which browsers read as ``/``) is refused
    outright rather than cleaned up.
    """
    if not target or len(target) > MAX_NEXT_LENGTH:
        return None
    if target.startswith("//") or "\\" in target:
        return None
    if any(_is_blank_or_control(char) for char in target):
        return None
    try:
        location = iri_to_uri(target)
        parts = urlsplit(location)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not location.startswith("/") or location.startswith("//"):
        return None
    if "\\" in location or any(_is_blank_or_control(char) for char in location):
        return None
    return location


def safe_next(target: str | None) -> str:
    """Where to go after signing in: ``target`` if it is a path here, else home."""
    return local_redirect_target(target) or url_for("pages.home")


def refuse_access_tokens() -> None:
    """Registered before CSRFProtect's check, so a script that sends a token to
    the sign-in form learns that tokens never sign in, not that a form field
    is missing."""
    if request.endpoint == "auth.login" and "Authorization" in request.headers:
        abort(403, description="Access tokens cannot sign in. Sign in with a password.")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        throttle = signin.current()
        wait = throttle.blocked(username, request.remote_addr)
        if wait is not None:
            # Decided before the password is checked: the answer says
            # nothing about it, nor about whether the username exists.
            error = f"Too many failed sign-ins. Try again in {wait} seconds."
            page = render_template("login.html", error=error, next=None)
            return page, 429, {"Retry-After": str(wait)}
        user = find_user(username)
        valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
        if user is not None and valid:
            session.clear()  # a fresh session on sign-in defeats session fixation
            session["user_id"] = user.id
            return redirect(safe_next(request.args.get("next")))
        throttle.failed(username, request.remote_addr)
        error = "Wrong username or password."
    # Only a target that would be followed is carried into the form.
    next_target = local_redirect_target(request.args.get("next"))
    page = render_template(
        "login.html",
        error=error,
        next=next_target,
        # A wrong password keeps the name typed, as every sign-in form does.
        username=username[:MAX_USERNAME_SHOWN],
        demo=current_app.config.get("EXAMPLE_DEMO", False),
        demo_password=demo_password(),
    )
    return (page, 401) if error else page


def demo_password() -> str:
    # Imported here: the seed hashes passwords with this module.
    from .seed import DEMO_PASSWORD

    return DEMO_PASSWORD


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))
