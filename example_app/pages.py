"""The browsable pages for signed-in people: dashboard, workspace, project, repository."""

from __future__ import annotations

from flask import abort
from flask import Blueprint
from flask import render_template
from flask import url_for
from werkzeug.wrappers import Response

from . import gitrepos
from .auth import current_user
from .auth import login_required
from .models import find_project
from .models import find_repository
from .models import find_workspace
from .models import Project
from .models import Repository
from .models import role_in
from .models import Workspace

bp = Blueprint("pages", __name__)

#: How many of the newest commits (of every branch) a repository page lists.
RECENT_COMMITS = 10


def visible_workspace(workspace: str) -> tuple[Workspace, str]:
    """The workspace and the signed-in user's role; 404 to non-members, so names do not leak."""
    user = current_user()
    found = find_workspace(workspace)
    role = role_in(user, workspace) if user is not None else None
    if found is None or role is None:
        abort(404)
    return found, role


@bp.get("/favicon.ico")
def favicon() -> Response:
    """No icon (the pages say so with ``rel=icon href=data:,``); answered here so
    the request does not fall through to ``/<workspace>/`` and its redirect."""
    return Response(status=204, headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/")
@login_required
def home() -> str:
    user = current_user()
    assert user is not None
    memberships = sorted(user.memberships, key=lambda m: m.workspace.slug)
    return render_template("home.html", user=user, memberships=memberships)


@bp.get("/<workspace>/")
@login_required
def workspace(workspace: str) -> str:
    found, role = visible_workspace(workspace)
    return render_template("workspace.html", workspace=found, role=role)


@bp.get("/<workspace>/workspace/projects/<project_key>")
@login_required
def project(workspace: str, project_key: str) -> str:
    _, role = visible_workspace(workspace)
    found: Project | None = find_project(workspace, project_key)
    if found is None:
        abort(404)
    return render_template("project.html", project=found, role=role)


@bp.get("/<workspace>/<repo_slug>")
@login_required
def repository(workspace: str, repo_slug: str) -> str:
    _, role = visible_workspace(workspace)
    found: Repository | None = find_repository(workspace, repo_slug)
    if found is None:
        abort(404)
    clone_url = url_for("git.clone", workspace=workspace, repo_slug=found.slug, _external=True)
    # Read from the bare repository on each visit, so a push shows at once.
    path = gitrepos.repository_path(workspace, found.slug)
    branches = gitrepos.branches(path)
    commits = gitrepos.log(
        path, [f"refs/heads/{b.name}" for b in branches], skip=0, limit=RECENT_COMMITS
    )
    return render_template(
        "repository.html",
        repo=found,
        role=role,
        clone_url=clone_url,
        branches=branches,
        commits=commits,
    )


@bp.get("/<workspace>/<repo_slug>/pull-requests/<int:pull_request_id>")
@login_required
def pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> str:
    visible_workspace(workspace)
    repo = find_repository(workspace, repo_slug)
    found = [pr for pr in repo.pull_requests if pr.number == pull_request_id] if repo else []
    if not found:
        abort(404)
    return render_template("pull_request.html", pr=found[0])
