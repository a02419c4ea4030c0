from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope

app = Flask(__name__)
app.config["SECRET_KEY"] = "change me"
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///app.db"  # in the instance folder
# No management JSON API until a manager_loader says who may manage tokens.
app.config["ACCESSTOKENS_API_URL_PREFIX"] = None
db = SQLAlchemy(app)
tokens = AccessTokens(app, db=db)

# Which project holds each repository. A real app asks its own models.
PROJECTS = {("acme", "api"): "API", ("acme", "web"): "WEB"}


@tokens.project_loader
def project_of(workspace: str, repository: str) -> str | None:
    """Which project holds a repository: project tokens reach it through this."""
    return PROJECTS.get((workspace, repository))


@app.post("/repositories/<workspace>/<repo_slug>/push")
@require_scope("repository:write")
def push(workspace: str, repo_slug: str) -> dict[str, str]:
    return {"pushed_by": current_token.name}


with app.app_context():
    db.create_all()  # the extension's tables are on db.metadata
