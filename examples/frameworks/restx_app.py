"""Flask-RESTX: ``decorators`` on the Resource, so the token is checked
before RESTX validates the payload, and the scheme declared for Swagger 2.0
by hand (Flask-RESTX does not use apispec)."""

from flask import Flask
from flask_restx import Api
from flask_restx import fields
from flask_restx import Resource
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope

db = SQLAlchemy()
tokens = AccessTokens(db=db)
# Swagger 2.0 has no bearer scheme: an API key in the Authorization header.
AUTHORIZATIONS = {"accessToken": {"type": "apiKey", "in": "header", "name": "Authorization"}}
api = Api(authorizations=AUTHORIZATIONS, validate=True)
ns = api.namespace("repositories", path="/repositories/<workspace>/<repo_slug>")
variable = ns.model("Variable", {"key": fields.String(required=True)})


@ns.route("/pipelines_config/variables")
class Variables(Resource):
    # ``decorators`` wrap the whole view, so they run before RESTX validates
    # the payload; ``method_decorators`` and decorators on ``post`` run after.
    decorators = [require_scope("pipeline:variable")]

    @ns.doc(security="accessToken", description="Needs the scope `pipeline:variable`.")
    @ns.expect(variable)
    def post(self, workspace: str, repo_slug: str) -> tuple[dict[str, str], int]:
        return {"key": api.payload["key"], "created_by": current_token.actor}, 201


def create_app(config: dict[str, object] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="change me", SQLALCHEMY_DATABASE_URI="sqlite:///variables.db")
    app.config.update(config or {})
    db.init_app(app)
    tokens.init_app(app)
    api.init_app(app)
    with app.app_context():
        db.create_all()
    return app
