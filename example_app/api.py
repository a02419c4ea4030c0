"""The Bitbucket Cloud 2.0 REST API, each route behind the scope Bitbucket requires.

Writes name the acting token as their author, "<token name> (access token)",
as Bitbucket does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import NoReturn
from typing import TypeVar

from flask import abort
from flask import Blueprint
from flask import jsonify
from flask import request
from werkzeug.wrappers import Response

from flask_accesstokens import current_token
from flask_accesstokens import default_catalog
from flask_accesstokens import require_any_scope
from flask_accesstokens import require_scope

from . import bitbucket
from . import gitrepos
from .extensions import db
from .lifecycle import create_repository
from .lifecycle import delete_project
from .lifecycle import delete_repository
from .lifecycle import move_repository
from .models import Approval
from .models import find_project
from .models import find_repository
from .models import find_workspace
from .models import Pipeline
from .models import PipelineVariable
from .models import Project
from .models import PullRequest
from .models import PullRequestComment
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

F = TypeVar("F", bound=Callable[..., Any])

#: Blueprints whose routes may answer under /2.0: this API and the extension's
#: management API. The site's pages have catch-all rules (``/<workspace>/<repo_slug>``)
#: that would otherwise answer /2.0/user with a login redirect.
API_BLUEPRINTS = frozenset({"api", "accesstokens_api"})


def _route(method: str) -> Callable[[str], Callable[[F], F]]:
    def register(rule: str) -> Callable[[F], F]:
        # Bitbucket answers with and without a trailing slash, and clients use
        # both (atlassian-python-api asks for ``.../pullrequests/``). Matching
        # both forms beats a redirect, after which some clients drop the
        # Authorization header.
        return bp.route(rule, methods=[method], strict_slashes=False)

    return register


route_get = _route("GET")
route_post = _route("POST")
route_put = _route("PUT")
route_delete = _route("DELETE")


@bp.before_app_request
def only_api_routes_under_api_prefix() -> None:
    """Nothing under /2.0 is a page: a path no API route serves is a JSON 404."""
    path = request.path
    if path != bitbucket.API_PREFIX and not path.startswith(bitbucket.API_PREFIX + "/"):
        return
    if request.url_rule is not None and request.blueprint not in API_BLUEPRINTS:
        abort(404, description=f"No API resource at {path}.")


@bp.route("/", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], strict_slashes=False)
def root() -> NoReturn:
    """``/2.0`` itself: a JSON 404, not the redirect to ``/2.0/`` that routing
    would answer (in HTML, past the error handlers)."""
    abort(404, description="No API resource at this path.")


REPO = "/repositories/<workspace>/<repo_slug>"
PROJECT = "/workspaces/<workspace>/projects/<project_key>"
SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
#: Any scope at all: every token holds one, so any valid token passes. For the
#: routes that show a token its own identity, which needs no permission.
EVERY_SCOPE = tuple(scope.name for scope in default_catalog())
OWNERS_QUERY = re.compile(r'\s*permission\s*=\s*"owner"\s*')
PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
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
    """The token's bot user as the author of a change, cut (by the extension)
    to fit the 255-character columns that store it."""
    return current_token.actor


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


@route_get(REPO)
@require_scope("repository")
def get_repository(workspace: str, repo_slug: str) -> Response:
    return jsonify(bitbucket.repository_json(repository_or_404(workspace, repo_slug)))


@route_post(REPO)
@require_scope("repository:admin")
def create_repository_route(workspace: str, repo_slug: str) -> Any:
    """Only a workspace token can reach a repository that does not exist yet."""
    ws = workspace_or_404(workspace)
    data = json_object()
    if not SLUG.fullmatch(repo_slug):
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


@route_put(REPO)
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


@route_delete(REPO)
@require_scope("repository:delete")
def delete_repository_route(workspace: str, repo_slug: str) -> tuple[str, int]:
    delete_repository(repository_or_404(workspace, repo_slug), actor())
    return "", 204


# Pull requests


@route_get(f"{REPO}/pullrequests")
@require_scope("pullrequest")
def list_pull_requests(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    states = {state.upper() for state in request.args.getlist("state")} or {"OPEN"}
    prs = [pr for pr in sorted(repo.pull_requests, key=lambda p: -p.number) if pr.state in states]
    return jsonify(bitbucket.paginate(prs, bitbucket.pull_request_json))


@route_post(f"{REPO}/pullrequests")
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


@route_get(f"{REPO}/pullrequests/<int:pull_request_id>")
@require_scope("pullrequest")
def get_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.pull_request_json(pull_request_or_404(repo, pull_request_id)))


@route_post(f"{REPO}/pullrequests/<int:pull_request_id>/merge")
@require_scope("pullrequest:write")
def merge_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    return close_pull_request(workspace, repo_slug, pull_request_id, "merge", "MERGED")


@route_post(f"{REPO}/pullrequests/<int:pull_request_id>/decline")
@require_scope("pullrequest:write")
def decline_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    return close_pull_request(workspace, repo_slug, pull_request_id, "decline", "DECLINED")


def close_pull_request(
    workspace: str, repo_slug: str, pull_request_id: int, verb: str, state: str
) -> Response:
    """Merge or decline: only an open pull request, closed by the token."""
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    if pr.state != "OPEN":
        invalid(f"You can't {verb} a pull request that is {pr.state.lower()}.")
    pr.state = state
    pr.closed_by = actor()
    db.session.commit()
    return jsonify(bitbucket.pull_request_json(pr))


# Webhooks


@route_get(f"{REPO}/hooks")
@require_scope("webhook")
def list_hooks(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.paginate(repo.webhooks, bitbucket.webhook_json))


@route_post(f"{REPO}/hooks")
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


@route_get(f"{REPO}/hooks/<uid>")
@require_scope("webhook")
def get_hook(workspace: str, repo_slug: str, uid: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    for hook in repo.webhooks:
        if uid.strip("{}") == hook.uuid:
            return jsonify(bitbucket.webhook_json(hook))
    abort(404, description="Webhook not found.")


# Pipelines, their variables and runners


@route_get(f"{REPO}/pipelines/")
@require_scope("pipeline")
def list_pipelines(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    pipelines = sorted(repo.pipelines, key=lambda p: -p.build_number)
    return jsonify(bitbucket.paginate(pipelines, bitbucket.pipeline_json))


@route_post(f"{REPO}/pipelines/")
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


@route_get(f"{REPO}/pipelines_config/variables/")
@require_scope("pipeline:variable")
def list_variables(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.paginate(repo.variables, bitbucket.variable_json))


@route_post(f"{REPO}/pipelines_config/variables/")
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


@route_get(f"{REPO}/pipelines-config/runners")
@require_scope("runner")
def list_repository_runners(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.paginate(repo.runners, bitbucket.runner_json))


@route_post(f"{REPO}/pipelines-config/runners")
@require_scope("runner:write")
def create_repository_runner(workspace: str, repo_slug: str) -> Any:
    repo = repository_or_404(workspace, repo_slug)
    return jsonify(bitbucket.runner_json(new_runner(repo.workspace, repo))), 201


# Workspaces and projects


@route_get("/workspaces/<workspace>")
@require_scope("account")
def get_workspace(workspace: str) -> Response:
    return jsonify(bitbucket.workspace_json(workspace_or_404(workspace)))


@route_get("/workspaces/<workspace>/members")
@require_scope("account")
def list_members(workspace: str) -> Response:
    ws = workspace_or_404(workspace)
    members = sorted(ws.memberships, key=lambda m: m.user.username)
    query = request.args.get("q")
    if query is not None:
        # The one filter Bitbucket links to: a workspace's ``owners``. Admins are its owners.
        if OWNERS_QUERY.fullmatch(query) is None:
            invalid('Only q=permission="owner" is supported here.', q="Unsupported query.")
        members = [m for m in members if m.role == "admin"]
    return jsonify(bitbucket.paginate(members, bitbucket.membership_json))


@route_get("/workspaces/<workspace>/pipelines-config/runners")
@require_scope("runner")
def list_workspace_runners(workspace: str) -> Response:
    ws = workspace_or_404(workspace)
    runners = [runner for runner in ws.runners if runner.repository_id is None]
    return jsonify(bitbucket.paginate(runners, bitbucket.runner_json))


@route_post("/workspaces/<workspace>/pipelines-config/runners")
@require_scope("runner:write")
def create_workspace_runner(workspace: str) -> Any:
    return jsonify(bitbucket.runner_json(new_runner(workspace_or_404(workspace), None))), 201


@route_post("/workspaces/<workspace>/projects")
@require_scope("project:admin")
def create_project(workspace: str) -> Any:
    ws = workspace_or_404(workspace)
    data = json_object()
    key = text_field(data, "key", required=True)
    if not PROJECT_KEY.fullmatch(key):
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


@route_get(PROJECT)
@require_scope("project")
def get_project(workspace: str, project_key: str) -> Response:
    return jsonify(bitbucket.project_json(project_or_404(workspace, project_key)))


@route_put(PROJECT)
@require_scope("project:admin")
def update_project(workspace: str, project_key: str) -> Response:
    project = project_or_404(workspace, project_key)
    data = json_object()
    project.name = text_field(data, "name", default=project.name)
    project.description = text_field(data, "description", default=project.description)
    project.is_private = bool_field(data, "is_private", project.is_private)
    db.session.commit()
    return jsonify(bitbucket.project_json(project))


@route_delete(PROJECT)
@require_scope("project:admin")
def delete_project_route(workspace: str, project_key: str) -> tuple[str, int]:
    delete_project(project_or_404(workspace, project_key), actor())
    return "", 204


# Listings of what a token reaches: a workspace's repositories and projects


@route_get("/repositories/<workspace>")
@require_scope("repository", container=True)
def list_repositories(workspace: str) -> Response:
    """A repository token sees its repository, a project token its project's,
    a workspace token all of them."""
    ws = workspace_or_404(workspace)
    repos = [
        repo
        for project in ws.projects
        for repo in project.repositories
        if current_token.reaches(workspace, repository=repo.slug)
    ]
    repos.sort(key=lambda repo: repo.slug)
    return jsonify(bitbucket.paginate(repos, bitbucket.repository_json))


@route_get("/repositories")
@require_scope("repository", container=True)
def list_all_repositories() -> Response:
    """Bitbucket's list of every repository the caller can see. A token sees
    those of its workspace that it reaches; ``after`` keeps those created on or
    after a time, as on Bitbucket."""
    after = request.args.get("after")
    since = None
    if after is not None:
        try:
            since = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError:
            invalid("after must be an ISO 8601 time.", after="Not an ISO 8601 time.")
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
    ws = workspace_or_404(current_token.workspace)
    repos = [
        repo
        for project in ws.projects
        for repo in project.repositories
        if current_token.reaches(ws.slug, repository=repo.slug)
        and (since is None or as_utc(repo.created_on) >= since)
    ]
    repos.sort(key=lambda repo: (repo.created_on, repo.slug))
    return jsonify(bitbucket.paginate(repos, bitbucket.repository_json))


def as_utc(value: datetime) -> datetime:
    """SQLite gives back naive datetimes: they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@route_get("/workspaces/<workspace>/projects")
@require_scope("project", container=True)
def list_projects(workspace: str) -> Response:
    """Needs ``project`` as on Bitbucket: repository tokens cannot hold it."""
    ws = workspace_or_404(workspace)
    projects = [p for p in ws.projects if current_token.reaches(workspace, project=p.key)]
    return jsonify(bitbucket.paginate(projects, bitbucket.project_json))


# The token's own identity: Bitbucket gives each access token a bot user


@route_get("/user")
@require_any_scope(*EVERY_SCOPE, container=True)
def current_user() -> Response:
    return jsonify(bitbucket.bot_user_json(current_token))


@route_get("/workspaces")
@require_any_scope(*EVERY_SCOPE, container=True)
def list_workspaces() -> Response:
    """A token lives in exactly one workspace, and that is the one it sees."""
    found = find_workspace(current_token.workspace)
    return jsonify(bitbucket.paginate([found] if found else [], bitbucket.workspace_json))


@route_get("/user/workspaces")
@require_any_scope(*EVERY_SCOPE, container=True)
def list_user_workspaces() -> Response:
    """Bitbucket's successor of ``/workspaces``: the workspaces the caller can
    access, each wrapped with the caller's standing in it."""
    found = find_workspace(current_token.workspace)
    access = {
        "type": "workspace_access",
        "administrator": current_token.type == "workspace"
        and current_token.has_scope("project:admin"),
    }
    return jsonify(
        bitbucket.paginate(
            [found] if found else [],
            lambda ws: {**access, "workspace": bitbucket.workspace_ref(ws)},
        )
    )


# Git: branches and commits, read from the bare repository


def git_path(repo: Repository) -> Path:
    return gitrepos.repository_path(repo.workspace.slug, repo.slug)


def commit_page(repo: Repository, revisions: list[str]) -> Response:
    """Newest first, with ``next`` while more remain. Like Bitbucket's commit
    lists it has no ``size``: counting a long history is what paging avoids."""
    page, pagelen = bitbucket.page_args()
    found = gitrepos.log(git_path(repo), revisions, skip=(page - 1) * pagelen, limit=pagelen + 1)
    values = [bitbucket.commit_json(repo, commit) for commit in found[:pagelen]]
    return jsonify(bitbucket.page_body(values, page, pagelen, size=None, more=len(found) > pagelen))


def revisions_from_query(repo: Repository) -> list[str]:
    """``include``/``exclude`` as Bitbucket takes them; every branch by default."""
    include = request.args.getlist("include")
    exclude = request.args.getlist("exclude")
    if not include:
        include = [f"refs/heads/{b.name}" for b in gitrepos.branches(git_path(repo))]
    return include + [f"^{ref}" for ref in exclude]


@route_get(f"{REPO}/refs/branches")
@require_scope("repository")
def list_branches(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    found = gitrepos.branches(git_path(repo))
    return jsonify(bitbucket.paginate(found, lambda b: bitbucket.branch_json(repo, b)))


@route_get(f"{REPO}/refs/branches/<path:name>")
@require_scope("repository")
def get_branch(workspace: str, repo_slug: str, name: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    found = gitrepos.branch(git_path(repo), name)
    if found is None:
        abort(404, description=f"Branch {name} not found.")
    return jsonify(bitbucket.branch_json(repo, found))


@route_get(f"{REPO}/commits")
@require_scope("repository")
def list_commits(workspace: str, repo_slug: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    return commit_page(repo, revisions_from_query(repo))


@route_get(f"{REPO}/commits/<path:revision>")
@require_scope("repository")
def list_commits_of(workspace: str, repo_slug: str, revision: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    exclude = [f"^{ref}" for ref in request.args.getlist("exclude")]
    return commit_page(repo, [revision, *exclude])


@route_get(f"{REPO}/commit/<commit>")
@require_scope("repository")
def get_commit(workspace: str, repo_slug: str, commit: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    found = gitrepos.log(git_path(repo), [commit], skip=0, limit=1)
    if not found or not found[0].hash.startswith(commit.lower()):
        abort(404, description=f"Commit {commit} not found.")
    return jsonify(bitbucket.commit_json(repo, found[0]))


# What the app does not model answers as Bitbucket does for a repository that
# has none of it: an empty page, never a 404 a client would take for an error.


def empty_page() -> Response:
    page, pagelen = bitbucket.page_args()
    return jsonify(bitbucket.page_body([], page, pagelen, size=0, more=False))


@route_get(f"{REPO}/forks")
@require_scope("repository")
def list_forks(workspace: str, repo_slug: str) -> Response:
    repository_or_404(workspace, repo_slug)
    return empty_page()


@route_get(f"{REPO}/watchers")
@require_scope("repository")
def list_watchers(workspace: str, repo_slug: str) -> Response:
    repository_or_404(workspace, repo_slug)
    return empty_page()


@route_get(f"{REPO}/downloads")
@require_scope("repository")
def list_downloads(workspace: str, repo_slug: str) -> Response:
    repository_or_404(workspace, repo_slug)
    return empty_page()


@route_get("/snippets/<workspace>")
@require_scope("account")
def list_snippets(workspace: str) -> Response:
    workspace_or_404(workspace)
    return empty_page()


@route_get("/avatars/<uuid>")
def avatar(uuid: str) -> Response:
    """A generated picture. Public and looked up nowhere: it is a function of
    the uuid in its URL, so it tells nothing about what exists."""
    digest = hashlib.sha256(uuid.encode()).hexdigest()
    svg = AVATAR_SVG.format(colour=digest[:6])
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


AVATAR_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
    '<rect width="64" height="64" rx="8" fill="#{colour}"/></svg>'
)


# Pull request details


@route_get(f"{REPO}/pullrequests/<int:pull_request_id>/commits")
@require_scope("pullrequest")
def list_pull_request_commits(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    pr = pull_request_or_404(repo, pull_request_id)
    revisions = [f"refs/heads/{pr.source_branch}", f"^refs/heads/{pr.destination_branch}"]
    if gitrepos.branch(git_path(repo), pr.source_branch) is None:
        revisions = []  # nothing pushed yet: no commits
    return commit_page(repo, revisions)


@route_get(f"{REPO}/pullrequests/<int:pull_request_id>/diff")
@require_scope("pullrequest")
def pull_request_diff(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    pr = pull_request_or_404(repo, pull_request_id)
    patch = gitrepos.diff(git_path(repo), pr.destination_branch, pr.source_branch)
    return Response(patch + ("\n" if patch else ""), mimetype="text/plain")


@route_get(f"{REPO}/pullrequests/<int:pull_request_id>/comments")
@require_scope("pullrequest")
def list_pull_request_comments(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    """Oldest first, as Bitbucket sorts them."""
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    return jsonify(bitbucket.paginate(pr.comments, bitbucket.comment_json))


@route_post(f"{REPO}/pullrequests/<int:pull_request_id>/comments")
@require_scope("pullrequest")
def create_pull_request_comment(workspace: str, repo_slug: str, pull_request_id: int) -> Any:
    """Bitbucket lets whoever may read a pull request comment on it:
    ``pullrequest`` suffices. The body is ``{"content": {"raw": "..."}}``."""
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    data = json_object()
    content = data.get("content")
    if not isinstance(content, dict):
        invalid("content is required.", content="This field is required.")
    raw = text_field(content, "raw", required=True)
    comment = PullRequestComment(pull_request=pr, raw=raw, author=actor())
    db.session.add(comment)
    db.session.commit()
    return created(bitbucket.comment_json(comment))


@route_get(f"{REPO}/pullrequests/<int:pull_request_id>/comments/<int:comment_id>")
@require_scope("pullrequest")
def get_pull_request_comment(
    workspace: str, repo_slug: str, pull_request_id: int, comment_id: int
) -> Response:
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    for comment in pr.comments:
        if comment.id == comment_id:
            return jsonify(bitbucket.comment_json(comment))
    abort(404, description="Comment not found.")


@route_get(f"{REPO}/pullrequests/<int:pull_request_id>/activity")
@require_scope("pullrequest")
def list_pull_request_activity(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    """Approvals are the activity the app records."""
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    return jsonify(
        bitbucket.paginate(
            list(reversed(pr.approvals)),
            lambda approval: {
                "approval": {
                    "date": bitbucket.iso(approval.approved_on),
                    "user": bitbucket.user_ref(approval.approver),
                },
                "pull_request": {"type": "pullrequest", "id": pr.number, "title": pr.title},
            },
        )
    )


@route_post(f"{REPO}/pullrequests/<int:pull_request_id>/approve")
@require_scope("pullrequest:write")
def approve_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> Response:
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    if pr.state != "OPEN":
        invalid(f"You can't approve a pull request that is {pr.state.lower()}.")
    approval = next((a for a in pr.approvals if a.approver == actor()), None)
    if approval is None:
        approval = Approval(pull_request=pr, approver=actor())
        db.session.add(approval)
        db.session.commit()
    return jsonify(bitbucket.participant_json(approval))


@route_delete(f"{REPO}/pullrequests/<int:pull_request_id>/approve")
@require_scope("pullrequest:write")
def unapprove_pull_request(workspace: str, repo_slug: str, pull_request_id: int) -> tuple[str, int]:
    pr = pull_request_or_404(repository_or_404(workspace, repo_slug), pull_request_id)
    for approval in pr.approvals:
        if approval.approver == actor():
            db.session.delete(approval)
    db.session.commit()
    return "", 204


# Single pipelines and variables, where the client reads them back


@route_get(f"{REPO}/pipelines/<uid>")
@require_scope("pipeline")
def get_pipeline(workspace: str, repo_slug: str, uid: str) -> Response:
    repo = repository_or_404(workspace, repo_slug)
    for pipeline in repo.pipelines:
        if uid.strip("{}") == pipeline.uuid:
            return jsonify(bitbucket.pipeline_json(pipeline))
    abort(404, description="Pipeline not found.")


def variable_or_404(repo: Repository, uid: str) -> PipelineVariable:
    for variable in repo.variables:
        if uid.strip("{}") == variable.uuid:
            return variable
    abort(404, description="Variable not found.")


@route_get(f"{REPO}/pipelines_config/variables/<uid>")
@require_scope("pipeline:variable")
def get_variable(workspace: str, repo_slug: str, uid: str) -> Response:
    variable = variable_or_404(repository_or_404(workspace, repo_slug), uid)
    return jsonify(bitbucket.variable_json(variable))


@route_delete(f"{REPO}/pipelines_config/variables/<uid>")
@require_scope("pipeline:variable")
def delete_variable(workspace: str, repo_slug: str, uid: str) -> tuple[str, int]:
    variable = variable_or_404(repository_or_404(workspace, repo_slug), uid)
    db.session.delete(variable)
    db.session.commit()
    return "", 204
