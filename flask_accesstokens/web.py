"""What the JSON API and the admin pages share: who may manage, which
resource a URL names, and refusing access tokens.

Who may manage is a web concern, decided here once by asking the app's
``manager_loader``; the service below never asks. Errors are raised as
Werkzeug HTTP exceptions; each surface renders them its own way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import abort
from flask import request

from .credentials import presents_token
from .credentials import query_is_utf8
from .resources import Resource
from .state import app_state

#: Workspace, project and repository names in management URLs, as Bitbucket
#: allows them. The OpenAPI document states the same pattern.
SLUG = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}", re.ASCII)

#: The three kinds of resource, as the surfaces' URL rules name them.
RESOURCE_RULES = (
    ("repository", "/repositories/<workspace>/<repo_slug>"),
    ("project", "/workspaces/<workspace>/projects/<project_key>"),
    ("workspace", "/workspaces/<workspace>"),
)


def refuse_tokens_and_bad_queries(message: str) -> None:
    """Tokens never manage tokens, whatever the manager loader would say:
    a leaked token must not be able to mint more of itself. Checked before
    the app is asked anything. Only the extension's own credentials count:
    a user signed in with a JWT or Basic credentials is the loader's to judge."""
    prefix = app_state().settings.token_prefix
    if presents_token(request.environ.get("HTTP_AUTHORIZATION"), prefix):
        abort(403, message)
    if not query_is_utf8(request):
        abort(400, "The query string is not valid UTF-8.")


def resource_from_view_args(view_args: Mapping[str, Any] | None) -> Resource:
    """The resource a management URL names. Names that are not whole slugs
    get a 404 before the app is asked about them: no resource has them."""
    args = view_args or {}
    names = (args.get("workspace"), args.get("project_key"), args.get("repo_slug"))
    for name in names:
        if name is not None and (not isinstance(name, str) or not SLUG.fullmatch(name)):
            abort(404, "No such resource.")
    workspace, project, repository = names
    return Resource.of(workspace or "", project, repository)


def resource_args(resource: Resource) -> dict[str, str]:
    """The URL arguments naming ``resource``, the inverse of the above."""
    args = {"workspace": resource.workspace}
    if resource.project is not None and resource.type == "project":
        args["project_key"] = resource.project
    if resource.repository is not None:
        args["repo_slug"] = resource.repository
    return args


def require_manager(resource: Resource) -> str:
    """The signed-in user allowed to manage tokens on ``resource``, or 403."""
    state = app_state()
    loader = state.callbacks.manager_loader
    if loader is None:  # logged once at start-up (see AccessTokens)
        abort(403, f"You do not have permission to manage the access tokens of {resource}.")
    user = state.call(loader, resource)
    if not isinstance(user, str) or not user:
        abort(403, f"You do not have permission to manage the access tokens of {resource}.")
    return user
