"""Settings pages of a repository, project and workspace, for workspace admins.

Each links to the extension's access-token admin pages for its resource, which
render inside this app's layout through the documented template override
(``templates/accesstokens/base.html``). Project and workspace tokens are
offered on premium workspaces only.
"""

from __future__ import annotations

from typing import Any

from flask import abort
from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from werkzeug.wrappers import Response

from flask_accesstokens import Resource

from .auth import current_user
from .auth import login_required
from .lifecycle import delete_project
from .lifecycle import delete_repository
from .lifecycle import delete_workspace
from .models import find_project
from .models import find_repository
from .models import find_workspace
from .models import Project
from .models import Repository
from .models import role_in
from .models import Workspace

bp = Blueprint("settings", __name__)


def admin_workspace(workspace: str) -> Workspace:
    """404 for strangers (names do not leak), 403 for members who are not admins."""
    user = current_user()
    found = find_workspace(workspace)
    role = role_in(user, workspace) if user is not None else None
    if found is None or role is None:
        abort(404)
    if role != "admin":
        abort(403, description="Only workspace admins can change settings.")
    return found


def admin_project(workspace: str, project_key: str) -> Project:
    admin_workspace(workspace)
    found = find_project(workspace, project_key)
    if found is None:
        abort(404)
    return found


def admin_repository(workspace: str, repo_slug: str) -> Repository:
    admin_workspace(workspace)
    found = find_repository(workspace, repo_slug)
    if found is None:
        abort(404)
    return found


def signed_in_name() -> str | None:
    user = current_user()
    return user.username if user is not None else None


def tokens_page(workspace: str, **resource: Any) -> str:
    """The extension's admin page for a resource: ``repository=`` or
    ``project=`` (its URL variables are the model's level names) picks the
    repository or project page, neither the workspace's."""
    return url_for("accesstokens_admin.list_tokens", workspace=workspace, **resource)


@bp.app_template_global()
def settings_url(resource: Resource) -> str:
    """The settings page of the resource an access-token page is about, for
    the way back from the extension's pages."""
    if resource.type == "repository" and resource.repository is not None:
        return url_for(
            "settings.repository", workspace=resource.workspace, repo_slug=resource.repository
        )
    if resource.type == "project" and resource.project is not None:
        return url_for(
            "settings.project", workspace=resource.workspace, project_key=resource.project
        )
    return url_for("settings.workspace", workspace=resource.workspace)


@bp.get("/<workspace>/<repo_slug>/admin")
@login_required
def repository(workspace: str, repo_slug: str) -> str:
    repo = admin_repository(workspace, repo_slug)
    return render_template(
        "settings.html",
        kind="repository",
        title=repo.full_name,
        back_url=url_for("pages.repository", workspace=workspace, repo_slug=repo_slug),
        tokens_url=tokens_page(workspace, repository=repo_slug),
        delete_url=url_for(".delete_repository_form", workspace=workspace, repo_slug=repo_slug),
        workspace=repo.workspace,
    )


@bp.post("/<workspace>/<repo_slug>/admin/delete")
@login_required
def delete_repository_form(workspace: str, repo_slug: str) -> Response:
    delete_repository(admin_repository(workspace, repo_slug), signed_in_name())
    flash(f"Deleted {workspace}/{repo_slug}; its access tokens were revoked.")
    return redirect(url_for("pages.workspace", workspace=workspace))


@bp.get("/<workspace>/workspace/projects/<project_key>/settings")
@login_required
def project(workspace: str, project_key: str) -> str:
    found = admin_project(workspace, project_key)
    return render_template(
        "settings.html",
        kind="project",
        title=f"{workspace} / {found.name} ({found.key})",
        back_url=url_for("pages.project", workspace=workspace, project_key=project_key),
        tokens_url=tokens_page(workspace, project=project_key),
        delete_url=url_for(".delete_project_form", workspace=workspace, project_key=project_key),
        workspace=found.workspace,
    )


@bp.post("/<workspace>/workspace/projects/<project_key>/settings/delete")
@login_required
def delete_project_form(workspace: str, project_key: str) -> Response:
    delete_project(admin_project(workspace, project_key), signed_in_name())
    flash(f"Deleted project {project_key} and its repositories; their access tokens were revoked.")
    return redirect(url_for("pages.workspace", workspace=workspace))


@bp.get("/<workspace>/workspace/settings")
@login_required
def workspace(workspace: str) -> str:
    found = admin_workspace(workspace)
    return render_template(
        "settings.html",
        kind="workspace",
        title=found.name,
        back_url=url_for("pages.workspace", workspace=workspace),
        tokens_url=tokens_page(workspace),
        delete_url=url_for(".delete_workspace_form", workspace=workspace),
        workspace=found,
    )


@bp.post("/<workspace>/workspace/settings/delete")
@login_required
def delete_workspace_form(workspace: str) -> Response:
    delete_workspace(admin_workspace(workspace), signed_in_name())
    flash(f"Deleted workspace {workspace}; every access token in it was revoked.")
    return redirect(url_for("pages.home"))
