"""Flask's ``MethodView``: ``decorators`` when every method needs the same
scopes, a decorator on each method when they differ."""

from flask import Flask
from flask import request
from flask.views import MethodView
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope

db = SQLAlchemy()
tokens = AccessTokens(db=db)


class Webhooks(MethodView):
    # Every method: as_view() wraps the whole view, so the token is checked
    # before the method runs and before anything reads the body.
    decorators = [require_scope("webhook")]

    def get(self, workspace: str, repo_slug: str) -> dict[str, object]:
        return {"webhooks": [], "token": current_token.name}

    def post(self, workspace: str, repo_slug: str) -> tuple[dict[str, object], int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "url" not in body:
            return {"error": "url is required"}, 400
        return {"url": body["url"]}, 201


class Branches(MethodView):
    # Scopes per method: each method carries its own decorator.
    @require_scope("repository")
    def get(self, workspace: str, repo_slug: str) -> dict[str, object]:
        return {"branches": ["main"]}

    @require_scope("repository:admin")
    def delete(self, workspace: str, repo_slug: str) -> tuple[str, int]:
        return "", 204


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="change me", SQLALCHEMY_DATABASE_URI="sqlite:///webhooks.db")
    app.config.update(config or {})
    db.init_app(app)
    tokens.init_app(app)
    repository = "/repositories/<workspace>/<repo_slug>"
    app.add_url_rule(f"{repository}/hooks", view_func=Webhooks.as_view("webhooks"))
    app.add_url_rule(f"{repository}/branches", view_func=Branches.as_view("branches"))
    with app.app_context():
        db.create_all()
    return app
