"""The Bitbucket Cloud 2.0 REST API, each route behind the scope Bitbucket requires.

Writes name the acting token as their author, "<token name> (access token)",
as Bitbucket does.
"""

from __future__ import annotations

import re
from typing import Any

from flask import abort
from flask import Blueprint
from flask import jsonify
from flask import request
from werkzeug.wrappers import Response

from flask_accesstokens import current_token
from flask_accesstokens import require_scope

from . import bitbucket
from .extensions import db
from .lifecycle import create_repository
from .lifecycle import delete_project
from .lifecycle import delete_repository
from .lifecycle import move_repository
from .models import find_project
from .models import find_repository
from .models import find_workspace
from .models import Pipeline
from .models import PipelineVariable
from .models import Project
from .models import PullRequest
from .models import Repository
from .models import Runner
from .models import Webhook
from .models import Workspace
from .payloads import bool_field
from .payloads import branch_name
from .payloads import invalid
from .payloads import json_object
from .payloads import project_key_field
from .payloads import text_field

bp = Blueprint("api", __name__, url_prefix=bitbucket.API_PREFIX)

REPO = "/repositories/<workspace>/<repo_slug>"
PROJECT = "/workspaces/<workspace>/projects/<project_key>"
SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
WEBHOOK_EVENTS = frozenset(
    {
        "repo:push",
        "repo:updated",
        "repo:deleted",
        "pullrequest:created",
        "pullrequest:updated",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
    }
)


def actor() -> str:
    return f"{current_token.name} (access token)"


def workspace_or_404(workspace: str) -> Workspace:
    found = find_workspace(workspace)
    if found is None:
        abort(404, description=f"Workspace {workspace} not found.")
    return found


def project_or_404(workspace: str, project_key: str) -> Project:
    found = find_project(workspace, project_key)
    if found is None:
        abort(404, description=f"Project {workspace}/{project_key} not found.")
    return found


def repository_or_404(workspace: str, repo_slug: str) -> Repository:
    found = find_repository(workspace, repo_slug)
    if found is None:
        abort(404, description=f"Repository {workspace}/{repo_slug} not found.")
    return found


def created(body: dict[str, Any]) -> tuple[Response, int, dict[str, str]]:
    location = body.get("links", {}).get("self", {}).get("href", "")
    return jsonify(body), 201, ({"Location": location} if location else {})


# Repositories


@bp.get(REPO)
@require_scope("repository")
def get_repository(workspace: str, repo_slug: str) -> Response:
    return jsonify(bitbucket.repository_json(repository_or_404(workspace, repo_slug)))


@bp.post(REPO)
@require_scope("repository:admin")
def create_repository_route(workspace: str, repo_slug: str) -> Any:
    """Only a workspace token can reach a repository that does not exist yet."""
    ws = workspace_or_404(workspace)
    data = json_object()
    if not SLUG.match(repo_slug):
        invalid("Invalid repository slug.", slug="Lowercase letters, digits, '-', '_', '.'.")
    if find_repository(workspace, repo_slug) is not None:
        invalid(f"Repository {workspace}/{repo_slug} already exists.", slug="Already taken.")
    key = project_key_field(data)
    project = find_project(workspace, key) if key else (ws.projects[0] if ws.projects else None)
    if project is None:
        invalid("No such project in this workspace.", project="Unknown project.")
    repo = create_repository(
        ws,
        project,
        repo_slug,
        name=text_field(data, "name", default=repo_slug),
        description=text_field(data, "description"),
        is_private=bool_field(data, "is_private", True),
    )
    return created(bitbucket.repository_json(repo))


@bp.put(REPO)
@require_scope("repository:admin")
def update_repository(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    data = json_object()
    repo.name = text_field(data, "name", default=repo.name)
    repo.description = text_field(data, "description", default=repo.description)
    repo.is_private = bool_field(data, "is_private", repo.is_private)
    key = project_key_field(data)
    if key is not None and key != repo.project.key:
        target = find_project(workspace, key)
        if target is None:
            invalid("No such project in this workspace.", project="Unknown project.")
        move_repository(repo, target)
    db.session.commit()
    return jsonify(bitbucket.repository_json(repo))


@bp.delete(REPO)
@require_scope("repository:delete")
def delete_repository_route(workspace: str, repo_slug: str) -> tuple[str, int]:
    delete_repository(repository_or_404(workspace, repo_slug), actor())
    return "", 204


# Pull requests


@bp.get(f"{REPO}/pullrequests")
@require_scope("pullrequest")
def list_pull_requests(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    state = request.args.get("state", "OPEN").upper()
    prs = [pr for pr in sorted(repo.pull_requests, key=lambda p: -p.number) if pr.state == state]
    return jsonify(bitbucket.paginate(prs, bitbucket.pull_request_json))


@bp.post(f"{REPO}/pullrequests")
@require_scope("pullrequest:write")
def create_pull_request(workspace: str, repo_slug: str) -> Any:
    repo = repository_or_404(workspace, repo_slug)
    data = json_object()
    number = max((pr.number for pr in repo.pull_requests), default=0) + 1
    pr = PullRequest(
        repository=repo,
        number=number,
        title=text_field(data, "title", required=True),
        description=text_field(data, "description"),
        source_branch=branch_name(data, "source"),
        destination_branch=branch_name(data, "destination", default="main"),
        author=actor(),
    )
    db.session.add(pr)
    db.session.commit()
    return created(bitbucket.pull_request_json(pr))


def pull_request_or_404(repo: Repository, number: int) -> PullRequest:
    for pr in repo.pull_requests:
        if pr.number == number:
            return pr
    abort(404, description=f"Pull request {number} not found.")


@bp.get(f"{REPO}/pullrequests/<int:pull_request_id>")
@require_scope("pullrequest")
def get_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.pull_request_json(pull_request_or_404(repo, pull_request_id)))


@bp.post(f"{REPO}/pullrequests/<int:pull_request_id>/merge")
@require_scope("pullrequest:write")
def merge_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    if pr.state != "OPEN":
        invalid(f"You can't merge a pull request that is {pr.state.lower()}.")
    pr.state = "MERGED"
    pr.closed_by = actor()
    db.session.commit()
    return jsonify(bitbucket.pull_request_json(pr))


# Webhooks


@bp.get(f"{REPO}/hooks")
@require_scope("webhook")
def list_hooks(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.paginate(repo.webhooks, bitbucket.webhook_json))


@bp.post(f"{REPO}/hooks")
@require_scope("webhook")
def create_hook(workspace: str, repo_slug: str) -> Any:
    repo = repository_or_404(workspace, repo_slug)
    data = json_object()
    url = text_field(data, "url", required=True)
    if not url.startswith(("https://", "http://")):
        invalid("url must be an http(s) URL.", url="Must be an http(s) URL.")
    events = data.get("events")
    if not isinstance(events, list) or not events or not set(events) <= WEBHOOK_EVENTS:
        invalid("events must list known events.", events=", ".join(sorted(WEBHOOK_EVENTS)))
    hook = Webhook(
        repository=repo,
        url=url,
        description=text_field(data, "description"),
        events=list(events),
        active=bool_field(data, "active", True),
        created_by=actor(),
    )
    db.session.add(hook)
    db.session.commit()
    return created(bitbucket.webhook_json(hook))


@bp.get(f"{REPO}/hooks/<uid>")
@require_scope("webhook")
def get_hook(workspace: str, repo_slug: str, uid: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    for hook in repo.webhooks:
        if uid.strip("{}") == hook.uuid:
            return jsonify(bitbucket.webhook_json(hook))
    abort(404, description="Webhook not found.")


# Pipelines, their variables and runners


@bp.get(f"{REPO}/pipelines/")
@require_scope("pipeline")
def list_pipelines(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    pipelines = sorted(repo.pipelines, key=lambda p: -p.build_number)
    return jsonify(bitbucket.paginate(pipelines, bitbucket.pipeline_json))


@bp.post(f"{REPO}/pipelines/")
@require_scope("pipeline:write")
def trigger_pipeline(workspace: str, repo_slug: str) -> Any:
    repo = repository_or_404(workspace, repo_slug)
    data = json_object()
    target = data.get("target")
    if not isinstance(target, dict):
        invalid("target is required.", target="This field is required.")
    ref_name = text_field(target, "ref_name", required=True)
    ref_type = text_field(target, "ref_type", default="branch")
    number = max((p.build_number for p in repo.pipelines), default=0) + 1
    pipeline = Pipeline(
        repository=repo, build_number=number, ref_type=ref_type, ref_name=ref_name, creator=actor()
    )
    db.session.add(pipeline)
    db.session.commit()
    return created(bitbucket.pipeline_json(pipeline))


@bp.get(f"{REPO}/pipelines_config/variables/")
@require_scope("pipeline:variable")
def list_variables(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.paginate(repo.variables, bitbucket.variable_json))


@bp.post(f"{REPO}/pipelines_config/variables/")
@require_scope("pipeline:variable")
def create_variable(workspace: str, repo_slug: str) -> Any:
    repo = repository_or_404(workspace, repo_slug)
    data = json_object()
    key = text_field(data, "key", required=True)
    if any(variable.key == key for variable in repo.variables):
        abort(409, description=f"A variable named {key} already exists.")
    variable = PipelineVariable(
        repository=repo,
        key=key,
        value=text_field(data, "value"),
        secured=bool_field(data, "secured", False),
        created_by=actor(),
    )
    db.session.add(variable)
    db.session.commit()
    return jsonify(bitbucket.variable_json(variable)), 201


def new_runner(workspace: Workspace, repo: Repository | None) -> Runner:
    data = json_object()
    labels = data.get("labels", ["self.hosted", "linux"])
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        invalid("labels must be a list of strings.", labels="Must be a list of strings.")
    runner = Runner(
        workspace=workspace,
        repository=repo,
        name=text_field(data, "name", required=True),
        labels=labels,
        created_by=actor(),
    )
    db.session.add(runner)
    db.session.commit()
    return runner


@bp.get(f"{REPO}/pipelines-config/runners")
@require_scope("runner")
def list_repository_runners(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.paginate(repo.runners, bitbucket.runner_json))


@bp.post(f"{REPO}/pipelines-config/runners")
@require_scope("runner:write")
def create_repository_runner(workspace: str, repo_slug: str) -> Any:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.runner_json(new_runner(repo.workspace, repo))), 201


# Workspaces and projects


@bp.get("/workspaces/<workspace>")
@require_scope("account")
def get_workspace(workspace: str) -> Response:
    return jsonify(bitbucket.workspace_json(workspace_or_404(workspace)))


@bp.get("/workspaces/<workspace>/members")
@require_scope("account")
def list_members(workspace: str) -> Response:
    ws = workspace_or_404(workspace)
    members = sorted(ws.memberships, key=lambda m: m.user.username)
    return jsonify(bitbucket.paginate(members, bitbucket.membership_json))


@bp.get("/workspaces/<workspace>/pipelines-config/runners")
@require_scope("runner")
def list_workspace_runners(workspace: str) -> Response:
    ws = workspace_or_404(workspace)
    runners = [runner for runner in ws.runners if runner.repository_id is None]
    return jsonify(bitbucket.paginate(runners, bitbucket.runner_json))


@bp.post("/workspaces/<workspace>/pipelines-config/runners")
@require_scope("runner:write")
def create_workspace_runner(workspace: str) -> Any:
    return jsonify(bitbucket.runner_json(new_runner(workspace_or_404(workspace), None))), 201


@bp.post("/workspaces/<workspace>/projects")
@require_scope("project:admin")
def create_project(workspace: str) -> Any:
    ws = workspace_or_404(workspace)
    data = json_object()
    key = text_field(data, "key", required=True)
    if not PROJECT_KEY.match(key):
        invalid("Invalid project key.", key="Uppercase letters, digits and '_'.")
    if find_project(workspace, key) is not None:
        invalid(f"Project {key} already exists.", key="Already taken.")
    project = Project(
        workspace=ws,
        key=key,
        name=text_field(data, "name", required=True),
        description=text_field(data, "description"),
        is_private=bool_field(data, "is_private", True),
    )
    db.session.add(project)
    db.session.commit()
    return created(bitbucket.project_json(project))


@bp.get(PROJECT)
@require_scope("project")
def get_project(workspace: str, project_key: str) -> Response:
    return jsonify(bitbucket.project_json(project_or_404(workspace, project_key)))


@bp.put(PROJECT)
@require_scope("project:admin")
def update_project(workspace: str, project_key: str) -> Response:
    project = project_or_404(workspace, project_key)
    data = json_object()
    project.name = text_field(data, "name", default=project.name)
    project.description = text_field(data, "description", default=project.description)
    project.is_private = bool_field(data, "is_private", project.is_private)
    db.session.commit()
    return jsonify(bitbucket.project_json(project))


@bp.delete(PROJECT)
@require_scope("project:admin")
def delete_project_route(workspace: str, project_key: str) -> tuple[str, int]:
    delete_project(project_or_404(workspace, project_key), actor())
    return "", 204
