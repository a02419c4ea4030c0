"""Flask-JWT-Extended beside access tokens: both are ``Bearer``, and only a
value with the token prefix is the extension's. People sign in for a JWT;
machines hold a token; either may read a repository; only people manage
tokens."""

from flask import Flask
from flask_jwt_extended import create_access_token
from flask_jwt_extended import get_jwt_identity
from flask_jwt_extended import JWTManager
from flask_jwt_extended import verify_jwt_in_request
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope
from flask_accesstokens import Resource

db = SQLAlchemy()
tokens = AccessTokens(db=db)
jwt = JWTManager()
ADMINS = {"acme": {"alice"}}


@tokens.manager_loader
def manager(resource: Resource) -> str | None:
    """``Bearer <JWT>`` reaches this loader; ``Bearer bbat_...`` never does."""
    verify_jwt_in_request(optional=True)
    user = get_jwt_identity()
    return user if user in ADMINS.get(resource.workspace, ()) else None


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="change me",
        JWT_SECRET_KEY="change me too, at least 32 bytes long",
        SQLALCHEMY_DATABASE_URI="sqlite:///repositories.db",
    )
    app.config.update(config or {})
    db.init_app(app)
    jwt.init_app(app)
    tokens.init_app(app)

    @app.post("/login/<user>")
    def login(user: str) -> dict[str, str]:  # a stand-in for a real sign-in
        return {"jwt": create_access_token(identity=user)}

    @app.get("/repositories/<workspace>/<repo_slug>")
    @require_scope("repository", optional=True)  # a JWT passes through to the view
    def repository(workspace: str, repo_slug: str) -> dict[str, str]:
        if current_token:
            return {"repository": repo_slug, "read_by": current_token.actor}
        verify_jwt_in_request()  # no token: a signed-in user, or Flask-JWT-Extended's 401
        return {"repository": repo_slug, "read_by": get_jwt_identity()}

    with app.app_context():
        db.create_all()
    return app
