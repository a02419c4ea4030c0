"""Signing in: the app's own session login with hashed passwords.

Access tokens are for machines and never sign in: a request that carries one
is refused here before any form field is read, and no session is started.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from typing import cast
from typing import TypeVar

from flask import abort
from flask import Blueprint
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response

from .extensions import db
from .models import find_user
from .models import User

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

# Checked against when the username is unknown, so timing does not tell which names exist.
_DUMMY_HASH = generate_password_hash("not a password")


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


def csrf_token() -> str:
    token = session.get("csrf_token")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf_token"] = token
    return token


def check_csrf() -> None:
    expected = session.get("csrf_token")
    sent = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        abort(400, description="The form expired or did not come from this site. Try again.")


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after login is a phishing aid."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("pages.home")


def refuse_access_tokens() -> None:
    if "Authorization" in request.headers:
        abort(403, description="Access tokens cannot sign in. Sign in with a password.")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    refuse_access_tokens()
    error = None
    if request.method == "POST":
        check_csrf()
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        user = find_user(username)
        valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
        if user is not None and valid:
            session.clear()  # a fresh session on sign-in defeats session fixation
            session["user_id"] = user.id
            return redirect(safe_next(request.args.get("next")))
        error = "Wrong username or password."
    page = render_template("login.html", error=error, next=request.args.get("next", ""))
    return (page, 401) if error else page


@bp.post("/logout")
def logout() -> Response:
    check_csrf()
    session.clear()
    return redirect(url_for("auth.login"))
