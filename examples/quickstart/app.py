from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope

app = Flask(__name__)
app.config["SECRET_KEY"] = "dev"  # a long random value in production
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///app.sqlite"

db = SQLAlchemy(app)
tokens = AccessTokens(app, db=db)

# Which project holds each repository. A real app asks its own models.
PROJECTS = {("acme", "api"): "API", ("acme", "web"): "WEB"}


@tokens.project_loader
def project_of(workspace: str, repository: str) -> str | None:
    return PROJECTS.get((workspace, repository))


@app.get("/repositories/<workspace>/<repo_slug>")
@require_scope("repository")
def repository(workspace: str, repo_slug: str) -> dict[str, str]:
    return {"repository": f"{workspace}/{repo_slug}", "token": current_token.name}


with app.app_context():
    db.create_all()
