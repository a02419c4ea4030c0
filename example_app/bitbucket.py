"""Bitbucket Cloud 2.0 JSON shapes: objects, paginated lists and errors.

A Bitbucket API client pointed at this app reads these unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import TypeVar
from urllib.parse import urlencode
from uuid import UUID
from uuid import uuid5

from flask import abort
from flask import request
from flask import url_for
from markupsafe import escape
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from flask_accesstokens import AuthenticatedToken

from . import gitrepos
from .gitrepos import MAIN_BRANCH
from .models import Approval
from .models import Membership
from .models import Pipeline
from .models import PipelineVariable
from .models import Project
from .models import PullRequest
from .models import PullRequestComment
from .models import Repository
from .models import Runner
from .models import Webhook
from .models import Workspace

T = TypeVar("T")

API_PREFIX = "/2.0"
DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100
#: Bot users' uuids derive from their token's id, so one token is always the same user.
BOT_NAMESPACE = UUID("5f0c2a55-8d53-4c1e-9a0b-7d1c2f6e9b41")
_PAGE_NUMBER = re.compile(r"[0-9]{1,9}")


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


def paginate(
    items: Sequence[T], serialize: Callable[[T], dict[str, Any]], pagelen_max: int = MAX_PAGELEN
) -> dict[str, Any]:
    """One page of ``items`` as ``values``, ``page``, ``pagelen``, ``size`` and ``next``."""
    page, pagelen = page_args(pagelen_max)
    start = (page - 1) * pagelen
    return page_body(
        [serialize(item) for item in items[start : start + pagelen]],
        page,
        pagelen,
        size=len(items),
        more=start + pagelen < len(items),
    )


def page_args(pagelen_max: int = MAX_PAGELEN) -> tuple[int, int]:
    """``page`` and ``pagelen`` from the query; 400 for anything but a plain number."""
    page = _positive_int_arg("page", 1)
    pagelen = min(_positive_int_arg("pagelen", DEFAULT_PAGELEN), pagelen_max)
    return page, pagelen


def page_body(
    values: list[dict[str, Any]], page: int, pagelen: int, *, size: int | None, more: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"values": values, "page": page, "pagelen": pagelen}
    if size is not None:
        body["size"] = size
    if more:
        body["next"] = next_page_url(page + 1, pagelen)
    return body


def next_page_url(page: int, pagelen: int) -> str:
    """This request's URL with ``page`` and ``pagelen`` replaced.

    The path is built from the route's own arguments only, and the query is
    copied as sent, never passed to ``url_for``: there a name like
    ``workspace``, ``_external``, ``_anchor`` or ``_method`` would override the
    route or change how the URL is built.
    """
    path = url_for(request.endpoint or "", _external=True, **(request.view_args or {}))
    query = [
        (name, value)
        for name, value in request.args.items(multi=True)
        if name not in ("page", "pagelen")
    ]
    query += [("page", str(page)), ("pagelen", str(pagelen))]
    return f"{path}?{urlencode(query)}"


def _positive_int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() accepts "²", which int() then refuses.
    if not _PAGE_NUMBER.fullmatch(raw) or int(raw) < 1:
        abort(400, description=f"{name} must be a positive integer below 10^9.")
    return int(raw)


def user_ref(display_name: str) -> dict[str, Any]:
    """The author of a change. Tokens act as "<name> (access token)", like Bitbucket."""
    return {"type": "user", "display_name": display_name}


def href(endpoint: str, **values: Any) -> dict[str, str]:
    return {"href": url_for(endpoint, _external=True, **values)}


def avatar(uuid: str) -> dict[str, str]:
    return href("api.avatar", uuid=uuid)


def bot_user_json(token: AuthenticatedToken) -> dict[str, Any]:
    """The identity an access token acts as: Bitbucket gives each token its own
    bot user, named after the token, that is nobody's personal account."""
    uuid = str(uuid5(BOT_NAMESPACE, token.id))
    return {
        "type": "user",
        "uuid": braced(uuid),
        "display_name": token.name,
        "nickname": token.name,
        "account_status": "active",
        "is_staff": False,
        "has_2fa_enabled": None,
        "created_on": None,
        "links": {"self": href("api.current_user"), "avatar": avatar(uuid)},
    }


def workspace_ref(workspace: Workspace) -> dict[str, Any]:
    return {
        "type": "workspace",
        "uuid": braced(workspace.uuid),
        "slug": workspace.slug,
        "name": workspace.name,
        "links": {
            "self": href("api.get_workspace", workspace=workspace.slug),
            "html": href("pages.workspace", workspace=workspace.slug),
            "avatar": avatar(workspace.uuid),
        },
    }


def workspace_json(workspace: Workspace) -> dict[str, Any]:
    """With every link Bitbucket gives a workspace: clients follow ``projects``,
    ``repositories`` and ``members`` rather than build those URLs."""
    body = workspace_ref(workspace)
    slug = workspace.slug
    body["links"].update(
        members=href("api.list_members", workspace=slug),
        owners=href("api.list_members", workspace=slug, q='permission="owner"'),
        projects=href("api.list_projects", workspace=slug),
        repositories=href("api.list_repositories", workspace=slug),
        snippets=href("api.list_snippets", workspace=slug),
    )
    return {**body, "is_private": True, "created_on": iso(workspace.created_on)}


def project_ref(project: Project) -> dict[str, Any]:
    ws = project.workspace.slug
    return {
        "type": "project",
        "uuid": braced(project.uuid),
        "key": project.key,
        "name": project.name,
        "links": {
            "self": href("api.get_project", workspace=ws, project_key=project.key),
            "html": href("pages.project", workspace=ws, project_key=project.key),
            "avatar": avatar(project.uuid),
        },
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
        "links": {
            "self": href("api.get_repository", workspace=ws, repo_slug=repo.slug),
            "html": href("pages.repository", workspace=ws, repo_slug=repo.slug),
            "avatar": avatar(repo.uuid),
        },
    }


def clone_url(repo: Repository) -> str:
    return url_for("pages.home", _external=True) + f"{repo.workspace.slug}/{repo.slug}.git"


def repository_json(repo: Repository) -> dict[str, Any]:
    body = repository_ref(repo)
    where = {"workspace": repo.workspace.slug, "repo_slug": repo.slug}
    body["links"].update(
        pullrequests=href("api.list_pull_requests", **where),
        commits=href("api.list_commits", **where),
        forks=href("api.list_forks", **where),
        watchers=href("api.list_watchers", **where),
        downloads=href("api.list_downloads", **where),
        hooks=href("api.list_hooks", **where),
        clone=[{"name": "https", "href": clone_url(repo)}],
    )
    return {
        **body,
        "description": repo.description,
        "is_private": repo.is_private,
        "scm": "git",
        "fork_policy": "no_public_forks",
        "has_issues": False,
        "has_wiki": False,
        "mainbranch": {"type": "branch", "name": MAIN_BRANCH},
        "project": project_ref(repo.project),
        "workspace": workspace_ref(repo.workspace),
        "owner": workspace_ref(repo.workspace),
        "created_on": iso(repo.created_on),
        "updated_on": iso(repo.updated_on),
    }


def pull_request_endpoint(repo: Repository, branch_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "branch": {"name": branch_name},
        "commit": None,
        "repository": repository_ref(repo),
    }
    head = gitrepos.branch(gitrepos.repository_path(repo.workspace.slug, repo.slug), branch_name)
    if head is not None:
        body["commit"] = {"type": "commit", "hash": head.target.hash}
    return body


def pull_request_json(pr: PullRequest) -> dict[str, Any]:
    repo = pr.repository
    where = {
        "workspace": repo.workspace.slug,
        "repo_slug": repo.slug,
        "pull_request_id": pr.number,
    }
    return {
        "type": "pullrequest",
        "id": pr.number,
        "title": pr.title,
        "description": pr.description,
        "state": pr.state,
        "author": user_ref(pr.author),
        "closed_by": user_ref(pr.closed_by) if pr.closed_by else None,
        "source": pull_request_endpoint(repo, pr.source_branch),
        "destination": pull_request_endpoint(repo, pr.destination_branch),
        "close_source_branch": False,
        "comment_count": len(pr.comments),
        "task_count": 0,
        "reason": "",
        "participants": [participant_json(approval) for approval in pr.approvals],
        "reviewers": [],
        "created_on": iso(pr.created_on),
        "updated_on": iso(pr.updated_on),
        "links": {
            "self": href("api.get_pull_request", **where),
            "html": href("pages.pull_request", **where),
            "commits": href("api.list_pull_request_commits", **where),
            "approve": href("api.approve_pull_request", **where),
            "diff": href("api.pull_request_diff", **where),
            "comments": href("api.list_pull_request_comments", **where),
            "activity": href("api.list_pull_request_activity", **where),
            "merge": href("api.merge_pull_request", **where),
            "decline": href("api.decline_pull_request", **where),
        },
    }


def comment_json(comment: PullRequestComment) -> dict[str, Any]:
    """Bitbucket's ``pullrequest_comment``: a ``comment`` (raw Markdown with
    its rendering) plus the pull request it is on."""
    pr = comment.pull_request
    repo = pr.repository
    where = {"workspace": repo.workspace.slug, "repo_slug": repo.slug, "pull_request_id": pr.number}
    return {
        "type": "pullrequest_comment",
        "id": comment.id,
        "created_on": iso(comment.created_on),
        "updated_on": iso(comment.updated_on),
        "content": {
            "type": "rendered",
            "raw": comment.raw,
            "markup": "markdown",
            "html": f"<p>{escape(comment.raw)}</p>",
        },
        "user": user_ref(comment.author),
        "deleted": False,
        "pending": False,
        "pullrequest": {
            "type": "pullrequest",
            "id": pr.number,
            "title": pr.title,
            "links": {"self": href("api.get_pull_request", **where)},
        },
        "links": {
            "self": href("api.get_pull_request_comment", **where, comment_id=comment.id),
            "html": href("pages.pull_request", **where, _anchor=f"comment-{comment.id}"),
        },
    }


def participant_json(approval: Approval) -> dict[str, Any]:
    return {
        "type": "participant",
        "user": user_ref(approval.approver),
        "role": "PARTICIPANT",
        "approved": True,
        "state": "approved",
        "participated_on": iso(approval.approved_on),
    }


def commit_json(repo: Repository, commit: gitrepos.GitCommit) -> dict[str, Any]:
    where = {"workspace": repo.workspace.slug, "repo_slug": repo.slug}
    return {
        "type": "commit",
        "hash": commit.hash,
        "date": iso(commit.date),
        "message": commit.message,
        "summary": {"raw": commit.message, "markup": "markdown", "html": ""},
        "author": {
            "type": "author",
            "raw": f"{commit.author_name} <{commit.author_email}>",
            "user": None,
        },
        "parents": [
            {
                "type": "commit",
                "hash": parent,
                "links": {"self": href("api.get_commit", **where, commit=parent)},
            }
            for parent in commit.parents
        ],
        "repository": repository_ref(repo),
        "links": {"self": href("api.get_commit", **where, commit=commit.hash)},
    }


def branch_json(repo: Repository, branch: gitrepos.GitBranch) -> dict[str, Any]:
    where = {"workspace": repo.workspace.slug, "repo_slug": repo.slug}
    return {
        "type": "branch",
        "name": branch.name,
        "target": commit_json(repo, branch.target),
        "merge_strategies": ["merge_commit", "squash", "fast_forward"],
        "default_merge_strategy": "merge_commit",
        "links": {
            "self": href("api.get_branch", **where, name=branch.name),
            "commits": href("api.list_commits_of", **where, revision=branch.name),
            "html": href("pages.repository", **where),
        },
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
