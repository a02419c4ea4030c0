"""The demo data, and ``flask --app example_app seed-demo`` to create it.

Idempotent: what exists is left as it is, what is missing is added, so running
it twice, or on top of a demo you played with, is safe.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .auth import hash_password
from .extensions import db
from .gitrepos import init_bare
from .gitrepos import repository_path
from .models import find_project
from .models import find_repository
from .models import find_user
from .models import find_workspace
from .models import Membership
from .models import Project
from .models import Repository
from .models import User
from .models import Workspace

DEMO_PASSWORD = "demo"

USERS = {"alice": "Alice Admin", "bob": "Bob Builder"}

#: workspace slug -> (name, plan, {project key: (name, [repository slugs])})
WORKSPACES: dict[str, tuple[str, str, dict[str, tuple[str, list[str]]]]] = {
    "acme": (
        "Acme Corp",
        "premium",
        {"API": ("Backend API", ["api", "lib"]), "WEB": ("Web frontend", ["web"])},
    ),
    "hobby": ("Alice's hobbies", "free", {"HOB": ("Hobby projects", ["notes"])}),
}

#: (username, workspace slug, role)
MEMBERSHIPS = [("alice", "acme", "admin"), ("alice", "hobby", "admin"), ("bob", "acme", "member")]


def seed_demo() -> None:
    """Create whatever part of the demo data is missing."""
    users = {name: _user(name, display) for name, display in USERS.items()}
    for slug, (name, plan, projects) in WORKSPACES.items():
        workspace: Workspace = find_workspace(slug) or Workspace(slug=slug, name=name, plan=plan)
        db.session.add(workspace)
        for key, (project_name, repos) in projects.items():
            project: Project = find_project(slug, key) or Project(
                workspace=workspace, key=key, name=project_name
            )
            db.session.add(project)
            for repo_slug in repos:
                if find_repository(slug, repo_slug) is None:
                    db.session.add(
                        Repository(
                            workspace=workspace, project=project, slug=repo_slug, name=repo_slug
                        )
                    )
                init_bare(repository_path(slug, repo_slug), f"# {slug}/{repo_slug}\n")
            db.session.flush()
    for username, slug, role in MEMBERSHIPS:
        user = users[username]
        if not any(m.workspace.slug == slug for m in user.memberships):
            db.session.add(Membership(user=user, workspace=find_workspace(slug), role=role))
    db.session.commit()


def _user(username: str, display_name: str) -> User:
    user = find_user(username)
    if user is None:
        user = User(
            username=username,
            display_name=display_name,
            password_hash=hash_password(DEMO_PASSWORD),
        )
        db.session.add(user)
        db.session.flush()
    return user


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Create the demo users, workspaces, projects and git repositories."""
    seed_demo()
    click.echo("Demo data is ready. Sign in as alice or bob, password: demo.")
