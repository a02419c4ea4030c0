"""What the extension asks the app: where a repository lives, who may manage
tokens, and which token types a workspace's plan includes."""

from __future__ import annotations

from flask_accesstokens import Resource

from .auth import current_user
from .extensions import tokens
from .models import find_project
from .models import find_repository
from .models import find_workspace
from .models import role_in

ALL_TOKEN_TYPES = ("repository", "project", "workspace")


@tokens.project_loader
def project_of(workspace: str, repository: str) -> str | None:
    # Read on every request, so moving a repository re-targets project tokens at once.
    repo = find_repository(workspace, repository)
    return repo.project.key if repo is not None else None


def resource_exists(resource: Resource) -> bool:
    if resource.type == "repository" and resource.repository is not None:
        return find_repository(resource.workspace, resource.repository) is not None
    if resource.type == "project" and resource.project is not None:
        return find_project(resource.workspace, resource.project) is not None
    return find_workspace(resource.workspace) is not None


@tokens.manager_loader
def manager_of(resource: Resource) -> str | None:
    """Workspace admins manage every token in their workspace; nobody else does."""
    user = current_user()
    if user is None or role_in(user, resource.workspace) != "admin":
        return None
    if not resource_exists(resource):
        return None
    return user.username


@tokens.allowed_token_types_loader
def token_types_of(workspace: str) -> tuple[str, ...]:
    """Project and workspace tokens are a premium feature, as on Bitbucket."""
    found = find_workspace(workspace)
    if found is None:
        return ()
    return ALL_TOKEN_TYPES if found.is_premium else ("repository",)
