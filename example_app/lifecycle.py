"""Creating, moving and deleting repositories, projects and workspaces.

Deleting a resource revokes the tokens bound to it, and to everything inside
it, first: if the deletion then fails, access is lost rather than left behind.
"""

from __future__ import annotations

from .extensions import db
from .extensions import tokens
from .gitrepos import init_bare
from .gitrepos import remove
from .gitrepos import repository_path
from .models import Project
from .models import Repository
from .models import Workspace


def create_repository(
    workspace: Workspace,
    project: Project,
    slug: str,
    *,
    name: str | None = None,
    description: str = "",
    is_private: bool = True,
) -> Repository:
    repo = Repository(
        workspace=workspace,
        project=project,
        slug=slug,
        name=name or slug,
        description=description,
        is_private=is_private,
    )
    db.session.add(repo)
    db.session.flush()
    init_bare(repository_path(workspace.slug, slug), f"# {name or slug}\n")
    db.session.commit()
    return repo


def move_repository(repo: Repository, project: Project) -> None:
    """Project tokens follow at once: the project loader reads this row on every request."""
    repo.project = project
    db.session.commit()


def delete_repository(repo: Repository, actor: str | None = None) -> None:
    workspace, slug = repo.workspace.slug, repo.slug
    tokens.revoke_resource_tokens(workspace=workspace, repository=slug, revoked_by=actor)
    db.session.delete(repo)
    db.session.commit()
    remove(repository_path(workspace, slug))


def delete_project(project: Project, actor: str | None = None) -> None:
    """Its repositories go with it, and so do their tokens: revoking a
    project's tokens takes only the project tokens, so each repository's too."""
    workspace, key = project.workspace.slug, project.key
    slugs = [repo.slug for repo in project.repositories]
    tokens.revoke_resource_tokens(workspace=workspace, project=key, revoked_by=actor)
    for slug in slugs:
        tokens.revoke_resource_tokens(workspace=workspace, repository=slug, revoked_by=actor)
    db.session.delete(project)
    db.session.commit()
    for slug in slugs:
        remove(repository_path(workspace, slug))


def delete_workspace(workspace: Workspace, actor: str | None = None) -> None:
    """One call is enough: revoking a workspace's tokens takes every token in
    it, its project and repository tokens included."""
    slug = workspace.slug
    repos = [repo.slug for project in workspace.projects for repo in project.repositories]
    tokens.revoke_resource_tokens(workspace=slug, revoked_by=actor)
    db.session.delete(workspace)
    db.session.commit()
    for repo in repos:
        remove(repository_path(slug, repo))
