"""Flask-HTTPAuth beside access tokens: Basic for people (``alice:secret``)
and Basic ``x-token-auth`` or Bearer for tokens, sent each to its owner with
:func:`~flask_accesstokens.carries_token`, as Flask-HTTPAuth's ``MultiAuth``
tries each scheme in turn."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask
from flask_httpauth import HTTPBasicAuth
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from flask_accesstokens import AccessTokens
from flask_accesstokens import carries_token
from flask_accesstokens import current_token
from flask_accesstokens import verify_token_in_request

db = SQLAlchemy()
tokens = AccessTokens(db=db)
basic = HTTPBasicAuth()
USERS = {"alice": generate_password_hash("secret")}


@basic.verify_password
def verify_password(name: str, password: str) -> str | None:
    if name in USERS and check_password_hash(USERS[name], password):
        return name
    return None


def user_or_token(*scopes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A signed-in user, or a token with ``scopes`` for this resource."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        as_user = basic.login_required(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if carries_token():
                verify_token_in_request(*scopes)  # 401/403 as on any protected route
                return view(*args, **kwargs)
            return as_user(*args, **kwargs)

        return wrapper

    return decorate


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="change me", SQLALCHEMY_DATABASE_URI="sqlite:///basic.db")
    app.config.update(config or {})
    db.init_app(app)
    tokens.init_app(app)

    @app.get("/repositories/<workspace>/<repo_slug>")
    @user_or_token("repository")
    def repository(workspace: str, repo_slug: str) -> dict[str, str]:
        reader = current_token.actor if current_token else basic.current_user()
        return {"repository": repo_slug, "read_by": reader}

    with app.app_context():
        db.create_all()
    return app
