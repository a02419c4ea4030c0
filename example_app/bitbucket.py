"""Bitbucket Cloud 2.0 JSON shapes: objects, paginated lists and errors.

A Bitbucket API client pointed at this app reads these unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import TypeVar

from flask import abort
from flask import request
from flask import url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .models import Membership
from .models import Pipeline
from .models import PipelineVariable
from .models import Project
from .models import PullRequest
from .models import Repository
from .models import Runner
from .models import Webhook
from .models import Workspace

T = TypeVar("T")

API_PREFIX = "/2.0"
DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "error": {"message": message, **extra}}


def braced(value: str) -> str:
    return "{" + value + "}"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands datetimes back naive; they were stored as UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def links(self_href: str, html_href: str | None = None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"self": {"href": self_href}}
    if html_href is not None:
        result["html"] = {"href": html_href}
    result.update(extra)
    return result


def paginate(items: Sequence[T], serialize: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """One page of ``items`` as ``values``, ``page``, ``pagelen``, ``size`` and ``next``."""
    page = _positive_int_arg("page", 1)
    pagelen = min(_positive_int_arg("pagelen", DEFAULT_PAGELEN), MAX_PAGELEN)
    start = (page - 1) * pagelen
    body: dict[str, Any] = {
        "values": [serialize(item) for item in items[start : start + pagelen]],
        "page": page,
        "pagelen": pagelen,
        "size": len(items),
    }
    if start + pagelen < len(items):
        values: dict[str, Any] = {
            **(request.view_args or {}),
            **request.args.to_dict(),
            "page": page + 1,
            "pagelen": pagelen,
        }
        body["next"] = url_for(request.endpoint or "", _external=True, **values)
    return body


def _positive_int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        abort(400, description=f"{name} must be a positive integer.")
    return int(raw)


def user_ref(display_name: str) -> dict[str, Any]:
    """The author of a change. Tokens act as "<name> (access token)", like Bitbucket."""
    return {"type": "user", "display_name": display_name}


def workspace_ref(workspace: Workspace) -> dict[str, Any]:
    return {
        "type": "workspace",
        "uuid": braced(workspace.uuid),
        "slug": workspace.slug,
        "name": workspace.name,
        "links": links(
            url_for("api.get_workspace", workspace=workspace.slug, _external=True),
            url_for("pages.workspace", workspace=workspace.slug, _external=True),
        ),
    }


def workspace_json(workspace: Workspace) -> dict[str, Any]:
    return {
        **workspace_ref(workspace),
        "is_private": True,
        "created_on": iso(workspace.created_on),
    }


def project_ref(project: Project) -> dict[str, Any]:
    ws = project.workspace.slug
    return {
        "type": "project",
        "uuid": braced(project.uuid),
        "key": project.key,
        "name": project.name,
        "links": links(
            url_for("api.get_project", workspace=ws, project_key=project.key, _external=True),
            url_for("pages.project", workspace=ws, project_key=project.key, _external=True),
        ),
    }


def project_json(project: Project) -> dict[str, Any]:
    return {
        **project_ref(project),
        "description": project.description,
        "is_private": project.is_private,
        "owner": workspace_ref(project.workspace),
        "workspace": workspace_ref(project.workspace),
        "created_on": iso(project.created_on),
        "updated_on": iso(project.updated_on),
    }


def repository_ref(repo: Repository) -> dict[str, Any]:
    ws = repo.workspace.slug
    return {
        "type": "repository",
        "uuid": braced(repo.uuid),
        "slug": repo.slug,
        "name": repo.name,
        "full_name": repo.full_name,
        "links": links(
            url_for("api.get_repository", workspace=ws, repo_slug=repo.slug, _external=True),
            url_for("pages.repository", workspace=ws, repo_slug=repo.slug, _external=True),
        ),
    }


def clone_url(repo: Repository) -> str:
    return url_for("pages.home", _external=True) + f"{repo.workspace.slug}/{repo.slug}.git"


def repository_json(repo: Repository) -> dict[str, Any]:
    body = repository_ref(repo)
    body["links"]["clone"] = [{"name": "https", "href": clone_url(repo)}]
    return {
        **body,
        "description": repo.description,
        "is_private": repo.is_private,
        "scm": "git",
        "mainbranch": {"type": "branch", "name": "main"},
        "project": project_ref(repo.project),
        "workspace": workspace_ref(repo.workspace),
        "owner": workspace_ref(repo.workspace),
        "created_on": iso(repo.created_on),
        "updated_on": iso(repo.updated_on),
    }


def pull_request_json(pr: PullRequest) -> dict[str, Any]:
    repo = pr.repository
    ws = repo.workspace.slug
    return {
        "type": "pullrequest",
        "id": pr.number,
        "title": pr.title,
        "description": pr.description,
        "state": pr.state,
        "author": user_ref(pr.author),
        "closed_by": user_ref(pr.closed_by) if pr.closed_by else None,
        "source": {"branch": {"name": pr.source_branch}, "repository": repository_ref(repo)},
        "destination": {
            "branch": {"name": pr.destination_branch},
            "repository": repository_ref(repo),
        },
        "created_on": iso(pr.created_on),
        "updated_on": iso(pr.updated_on),
        "links": links(
            url_for(
                "api.get_pull_request",
                workspace=ws,
                repo_slug=repo.slug,
                pull_request_id=pr.number,
                _external=True,
            ),
            url_for(
                "pages.pull_request",
                workspace=ws,
                repo_slug=repo.slug,
                pull_request_id=pr.number,
                _external=True,
            ),
        ),
    }


def webhook_json(hook: Webhook) -> dict[str, Any]:
    repo = hook.repository
    return {
        "type": "webhook_subscription",
        "uuid": braced(hook.uuid),
        "url": hook.url,
        "description": hook.description,
        "subject_type": "repository",
        "subject": repository_ref(repo),
        "active": hook.active,
        "events": list(hook.events),
        "created_at": iso(hook.created_at),
        "links": links(
            url_for(
                "api.get_hook",
                workspace=repo.workspace.slug,
                repo_slug=repo.slug,
                uid=braced(hook.uuid),
                _external=True,
            )
        ),
    }


def pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "type": "pipeline",
        "uuid": braced(pipeline.uuid),
        "build_number": pipeline.build_number,
        "creator": user_ref(pipeline.creator),
        "repository": repository_ref(pipeline.repository),
        "target": {
            "type": "pipeline_ref_target",
            "ref_type": pipeline.ref_type,
            "ref_name": pipeline.ref_name,
        },
        "state": {"type": "pipeline_state_pending", "name": pipeline.state},
        "created_on": iso(pipeline.created_on),
    }


def variable_json(variable: PipelineVariable) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "pipeline_variable",
        "uuid": braced(variable.uuid),
        "key": variable.key,
        "secured": variable.secured,
    }
    if not variable.secured:  # secured values are write-only, as on Bitbucket
        body["value"] = variable.value
    return body


def runner_json(runner: Runner) -> dict[str, Any]:
    return {
        "type": "pipeline_runner",
        "uuid": braced(runner.uuid),
        "name": runner.name,
        "labels": list(runner.labels),
        "state": {"status": "UNREGISTERED"},
        "created_on": iso(runner.created_on),
        "updated_on": iso(runner.created_on),
    }


def membership_json(membership: Membership) -> dict[str, Any]:
    user = membership.user
    return {
        "type": "workspace_membership",
        "permission": membership.role,
        "user": {
            "type": "user",
            "uuid": braced(user.uuid),
            "nickname": user.username,
            "display_name": user.display_name,
        },
        "workspace": workspace_ref(membership.workspace),
        "added_on": iso(membership.added_on),
    }


def handle_http_error(error: HTTPException) -> Response | HTTPException:
    """Errors under /2.0 in Bitbucket's shape; the extension's own JSON errors pass through."""
    if not request.path.startswith(API_PREFIX):
        return error
    response = error.get_response()
    if not isinstance(response, Response):
        response = Response(response.response, response.status, response.headers)
    if response.mimetype != "application/json":
        body = error_body(error.description or error.name)
        response.set_data(json.dumps(body))
        response.mimetype = "application/json"
    return response
