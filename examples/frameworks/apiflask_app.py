"""APIFlask: the token check above ``@app.input``, and the scopes in the
spec APIFlask generates."""

from apiflask import APIFlask
from apiflask import Schema
from apiflask.fields import String
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope

db = SQLAlchemy()
tokens = AccessTokens(db=db)


class PipelineIn(Schema):
    branch = String(required=True)


class PipelineOut(Schema):
    branch = String()
    started_by = String()


def create_app(config: dict[str, object] | None = None) -> APIFlask:
    app = APIFlask(__name__, title="Pipelines", version="1")
    app.config.update(SECRET_KEY="change me", SQLALCHEMY_DATABASE_URI="sqlite:///pipelines.db")
    app.config.update(config or {})
    db.init_app(app)
    tokens.init_app(app)  # an APIFlask app: its spec learns the scopes

    @app.post("/repositories/<workspace>/<repo_slug>/pipelines")
    @require_scope("pipeline:write")  # above @app.input: 401 before 422
    @app.input(PipelineIn)
    @app.output(PipelineOut, status_code=201)
    def run_pipeline(workspace: str, repo_slug: str, json_data: dict[str, str]) -> dict[str, str]:
        return {"branch": json_data["branch"], "started_by": current_token.actor}

    @app.get("/repositories/<workspace>/<repo_slug>/pipelines")
    @require_scope("pipeline", optional=True)  # public repositories list them to anyone
    def pipelines(workspace: str, repo_slug: str) -> dict[str, object]:
        return {"pipelines": [], "token": current_token.name if current_token else None}

    with app.app_context():
        db.create_all()
    return app
