"""atlassian-python-api's Bitbucket Cloud client, unchanged, against the app on
a real socket: everything the API serves, as its users would call it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from atlassian.bitbucket import Cloud
from flask import Flask
from gitwork import commit_on
from requests import HTTPError

Mint = Callable[..., str]


def cloud(live_server: str, secret: str) -> Cloud:
    return Cloud(url=f"http://{live_server}", token=secret)


def test_repository_and_its_pull_requests(host_app: Flask, live_server: str, mint: Mint) -> None:
    client = cloud(live_server, mint("pullrequest:write", repository="api", name="Bot"))
    head = commit_on(host_app, "acme", "api", "feature", files={"f.txt": "f\n"}, message="Add f")
    repo = client.repositories.get("acme", "api")
    assert (repo.slug, repo.name, repo.is_private) == ("api", "api", True)

    created = repo.pullrequests.create("Feature", "feature", destination_branch="main")
    assert created.id == 1
    assert created.author.display_name == "Bot (access token)"
    assert created.source_commit == head
    listed = list(repo.pullrequests.each())  # GET .../pullrequests/ with a trailing slash
    assert [pr.title for pr in listed] == ["Feature"]
    pr = repo.pullrequests.get(1)
    assert [c.message.strip() for c in pr.commits] == ["Add f"]
    assert "+f" in pr.diff()
    assert list(pr.comments()) == []
    pr.approve()
    assert [p["approved"] for p in repo.pullrequests.get(1).get_data("participants")] == [True]
    pr.merge()
    assert repo.pullrequests.get(1).is_merged
    second = repo.pullrequests.create("Another", "feature")
    second.decline()
    assert repo.pullrequests.get(second.id).is_declined


def test_branches_and_commits(host_app: Flask, live_server: str, mint: Mint) -> None:
    head = commit_on(host_app, "acme", "api", "feature", files={"g.txt": "g\n"}, message="Add g")
    repo = cloud(live_server, mint("repository", repository="api")).repositories.get("acme", "api")
    branches = {branch.name: branch.hash for branch in repo.branches.each()}
    assert set(branches) == {"feature", "main"}
    assert branches["feature"] == head
    messages = [commit.message.strip() for commit in repo.commits.each()]
    assert messages == ["Add g", "Initial commit"]
    assert repo.commits.get(head).hash == head
    assert [c.hash for c in repo.commits.each(top="main")] == [branches["main"]]


def test_hooks(live_server: str, mint: Mint) -> None:
    repo = cloud(live_server, mint("repository", "webhook", repository="api")).repositories.get(
        "acme", "api"
    )
    hook = repo.hooks.create("https://ci.example/hook", "CI", ["repo:push"])
    assert [h.uuid() for h in repo.hooks.each()] == [hook.uuid()]
    assert repo.hooks.get(hook.uuid()).webhook_url() == "https://ci.example/hook"


def test_pipelines_and_variables(live_server: str, mint: Mint) -> None:
    secret = mint("repository", "pipeline:write", "pipeline:variable", repository="api")
    repo = cloud(live_server, secret).repositories.get("acme", "api")
    pipeline = repo.pipelines.trigger(branch="main")
    assert pipeline.build_number == 1
    assert [p.uuid for p in repo.pipelines.each()] == [pipeline.uuid]
    assert repo.pipelines.get(pipeline.uuid).build_number == 1

    variable = repo.repository_variables.create("DEPLOY_ENV", "prod", False)
    assert [v.key for v in repo.repository_variables.each()] == ["DEPLOY_ENV"]
    assert repo.repository_variables.get(variable.uuid).value == "prod"


def test_runners(live_server: str, mint: Mint) -> None:
    """The client has no runner objects: its users call the paths through it."""
    client = cloud(live_server, mint("runner:write"))
    client.post("repositories/acme/api/pipelines-config/runners", data={"name": "r1"})
    client.post("workspaces/acme/pipelines-config/runners", data={"name": "w1"})
    repo_runners = client.get("repositories/acme/api/pipelines-config/runners/")
    assert [r["name"] for r in repo_runners["values"]] == ["r1"]
    ws_runners = client.get("workspaces/acme/pipelines-config/runners/")
    assert [r["name"] for r in ws_runners["values"]] == ["w1"]


def test_workspace_projects_repositories_and_members(live_server: str, mint: Mint) -> None:
    client = cloud(live_server, mint("account", "project", "project:admin", "repository:admin"))
    workspace = client.workspaces.get("acme")
    assert (workspace.slug, workspace.name) == ("acme", "Acme Corp")
    project = workspace.projects.get("API")
    assert (project.key, project.name) == ("API", "Backend API")
    assert [p.key for p in workspace.projects.each()] == ["API", "WEB"]
    assert [r.slug for r in workspace.repositories.each()] == ["api", "lib", "web"]
    assert workspace.repositories.get("web").slug == "web"
    assert [m.user["nickname"] for m in workspace.members.each()] == ["alice", "bob"]
    assert [w.slug for w in client.workspaces.each()] == ["acme"]
    assert client.workspaces.exists("acme")

    created = workspace.projects.create("Operations", "OPS", "Ops work")
    assert created.key == "OPS"
    new_repo = workspace.repositories.create("ops-tools", project_key="OPS")
    assert new_repo.get_data("project")["key"] == "OPS"


def test_project_token_sees_only_its_project(live_server: str, mint: Mint) -> None:
    client = cloud(live_server, mint("project", project="API"))
    assert client.repositories.get("acme", "lib").get_data("project")["key"] == "API"
    with pytest.raises(HTTPError) as outside:
        client.repositories.get("acme", "web")
    assert outside.value.response.status_code == 403
    with pytest.raises(HTTPError) as refused:
        client.workspaces.get("acme")  # needs account, which project tokens cannot hold
    assert refused.value.response.status_code == 403


def test_the_token_as_its_own_user(live_server: str, mint: Mint) -> None:
    client = cloud(live_server, mint("repository", repository="api", name="Deploy bot"))
    user = client.get("user")
    assert (user["type"], user["display_name"]) == ("user", "Deploy bot")
    workspaces = client.get("workspaces")
    assert [w["slug"] for w in workspaces["values"]] == ["acme"]


def test_pull_request_comments(host_app: Flask, live_server: str, mint: Mint) -> None:
    """``pr.comment()`` posts Bitbucket's body; the comment comes back in its shape."""
    commit_on(host_app, "acme", "api", "feature", files={"c.txt": "c\n"}, message="Add c")
    writer = cloud(live_server, mint("pullrequest:write", repository="api", name="Bot"))
    writer.repositories.get("acme", "api").pullrequests.create("Feature", "feature")
    reader = cloud(live_server, mint("pullrequest", repository="api", name="Reviewer"))
    pr = reader.repositories.get("acme", "api").pullrequests.get(1)
    answer = pr.comment("Looks good **to me**")
    assert answer["type"] == "pullrequest_comment"
    assert answer["content"]["raw"] == "Looks good **to me**"
    assert answer["user"]["display_name"] == "Reviewer (access token)"
    assert answer["pullrequest"]["id"] == 1
    comments = list(pr.comments())
    assert [c.raw for c in comments] == ["Looks good **to me**"]
    assert reader.repositories.get("acme", "api").pullrequests.get(1).comment_count == 1
    with pytest.raises(HTTPError) as refused:  # no pull request scope at all
        cloud(live_server, mint("repository", repository="api")).repositories.get(
            "acme", "api"
        ).pullrequests.get(1)
    assert refused.value.response.status_code == 403


def test_repositories_each(live_server: str, mint: Mint) -> None:
    """``repositories.each()`` lists what the token reaches, and nothing else."""
    everything = cloud(live_server, mint("repository", name="Workspace reader"))
    assert sorted(r.slug for r in everything.repositories.each()) == ["api", "lib", "web"]
    project = cloud(live_server, mint("project", project="API"))
    assert sorted(r.slug for r in project.repositories.each()) == ["api", "lib"]
    one = cloud(live_server, mint("repository", repository="web"))
    assert [r.slug for r in one.repositories.each()] == ["web"]
    assert list(one.repositories.each(after="2999-01-01T00:00:00Z")) == []


def test_the_demos_workspace_token_reads(host_app: Flask, live_server: str) -> None:
    """What the issue saw fail: the demo's workspace token could list members
    and nothing else. With ``repository`` beside its admin scopes it reads."""
    from example_app import demo

    with host_app.app_context():
        secret = demo.create_demo_tokens().workspace.secret
    client = cloud(live_server, secret)
    workspace = client.workspaces.get("acme")
    assert sorted(r.slug for r in workspace.repositories.each()) == ["api", "lib", "web"]
    assert client.repositories.get("acme", "web").slug == "web"
    assert {m.user["display_name"] for m in workspace.members.each()} >= {"Alice Admin"}
