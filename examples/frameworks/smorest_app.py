"""flask-smorest: the token check above the body's validation, and the
scopes in the app's spec, written once in the decorator."""

from flask import Flask
from flask.views import MethodView
from flask_smorest import Api
from flask_smorest import Blueprint
from flask_sqlalchemy import SQLAlchemy
from marshmallow import fields
from marshmallow import Schema

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_any_scope
from flask_accesstokens import require_scope

db = SQLAlchemy()
tokens = AccessTokens(db=db)
api = Api()
blp = Blueprint("pullrequests", __name__, url_prefix="/repositories/<workspace>/<repo_slug>")


class PullRequestSchema(Schema):
    title = fields.String(required=True)
    author = fields.String(dump_only=True)


@blp.route("/pullrequests")
class PullRequests(MethodView):
    # Outermost first: the token is checked before the body is parsed, so
    # a request without a token gets 401, never 422 with validation details.
    @require_scope("pullrequest:write")
    @blp.arguments(PullRequestSchema)
    @blp.response(201, PullRequestSchema)
    def post(self, pullrequest: dict[str, str], workspace: str, repo_slug: str) -> dict[str, str]:
        return {**pullrequest, "author": current_token.actor}

    @require_any_scope("pullrequest", "webhook")
    @blp.response(200, PullRequestSchema(many=True))
    def get(self, workspace: str, repo_slug: str) -> list[dict[str, str]]:
        return []


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="change me",
        SQLALCHEMY_DATABASE_URI="sqlite:///pullrequests.db",
        API_TITLE="Pull requests",
        API_VERSION="1",
        OPENAPI_VERSION="3.1.0",
    )
    app.config.update(config or {})
    db.init_app(app)
    api.init_app(app)
    tokens.init_app(app)  # after api.init_app: it finds the Api and documents it
    api.register_blueprint(blp)
    with app.app_context():
        db.create_all()
    return app
