"""Flask-Login beside access tokens: people in a browser session, machines
with a token, on the same route."""

from flask import Flask
from flask_login import current_user
from flask_login import login_user
from flask_login import LoginManager
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope

db = SQLAlchemy()
tokens = AccessTokens(db=db)
login_manager = LoginManager()


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


@login_manager.user_loader
def load_user(name: str) -> User | None:
    return User(name) if name in {"alice", "bob"} else None


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="change me", SQLALCHEMY_DATABASE_URI="sqlite:///session.db")
    app.config.update(config or {})
    db.init_app(app)
    login_manager.init_app(app)
    tokens.init_app(app)

    @app.post("/login/<name>")
    def login(name: str) -> dict[str, str]:  # a stand-in for a real sign-in form
        user = load_user(name)
        if user is None:
            return {"error": "no such user"}
        login_user(user)
        return {"signed_in": name}

    @app.get("/repositories/<workspace>/<repo_slug>")
    @require_scope("repository", optional=True)
    def repository(workspace: str, repo_slug: str) -> object:
        if current_token:  # a token never becomes a session: no cookie is set
            return {"repository": repo_slug, "read_by": current_token.actor}
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return {"repository": repo_slug, "read_by": current_user.id}

    with app.app_context():
        db.create_all()
    return app
