"""What the extension asks the app: where a repository lives, who may manage
tokens, which token types a workspace's plan includes, and where a signed-out
visitor of the access-token pages goes.

The loaders are plain functions, registered by :func:`register_token_callbacks`
from ``create_app``: what the extension asks is visible where the app is built,
and importing this module changes nothing.
"""

from __future__ import annotations

from flask import redirect
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource

from .auth import current_user
from .models import find_project
from .models import find_repository
from .models import find_workspace
from .models import role_in

ALL_TOKEN_TYPES = ("repository", "project", "workspace")


def register_token_callbacks(tokens: AccessTokens) -> None:
    """Tell the extension how this app answers its questions."""
    tokens.project_loader(project_of)
    tokens.manager_loader(manager_of)
    tokens.allowed_token_types_loader(token_types_of)
    tokens.resource_exists(resource_exists)
    tokens.unauthorized_handler(sign_in_first)


def project_of(workspace: str, repository: str) -> str | None:
    """The key of the project holding a repository, so project tokens reach it.

    Read on every request, so moving a repository re-targets project tokens at once.
    """
    repo = find_repository(workspace, repository)
    return repo.project.key if repo is not None else None


def resource_exists(resource: Resource) -> bool:
    """Whether a resource exists: no surface makes a token for one that does not."""
    if resource.type == "repository" and resource.repository is not None:
        return find_repository(resource.workspace, resource.repository) is not None
    if resource.type == "project" and resource.project is not None:
        return find_project(resource.workspace, resource.project) is not None
    return find_workspace(resource.workspace) is not None


def manager_of(resource: Resource) -> str | None:
    """Workspace admins manage every token in their workspace; nobody else does."""
    user = current_user()
    if user is None or role_in(user, resource.workspace) != "admin":
        return None
    if not resource_exists(resource):
        return None
    return user.username


def sign_in_first(resource: Resource) -> Response | None:
    """A signed-out visitor of an access-token page is sent to sign in, and
    back afterwards, as every other page of the app does. A signed-in user
    who may not manage the resource keeps the 403."""
    if current_user() is not None:
        return None
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def token_types_of(workspace: str) -> tuple[str, ...]:
    """Project and workspace tokens are a premium feature, as on Bitbucket."""
    found = find_workspace(workspace)
    if found is None:
        return ()
    return ALL_TOKEN_TYPES if found.is_premium else ("repository",)
