"""Resources and the binding check: does this token reach this route?

Routes name their resource through view arguments (``ACCESSTOKENS_VIEW_ARGS``).
The check fails closed: a route that names no resource, or a resource the
token's type cannot be compared with, is denied. It never asks whether a
resource exists, except through ``project_loader``, and a missing repository
is denied exactly like someone else's, so answers reveal nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tokens import AuthenticatedToken

DEFAULT_VIEW_ARGS = {"workspace": "workspace", "project": "project_key", "repository": "repo_slug"}

ProjectLoader = Callable[[str, str], "str | None"]


class Resource(NamedTuple):
    """A workspace, a project in it, or a repository in it.

    ``project`` may be set on a repository resource when the route names it,
    or when the token record knows it.
    """

    type: str
    workspace: str
    project: str | None = None
    repository: str | None = None

    @classmethod
    def of(
        cls, workspace: str, project: str | None = None, repository: str | None = None
    ) -> Resource:
        """The resource these names denote; ``ValueError`` names a bad field."""
        if not workspace:
            raise ValueError("workspace: required")
        if repository and project:
            raise ValueError("project: give a project or a repository, not both")
        if repository:
            return cls("repository", workspace, None, repository)
        if project:
            return cls("project", workspace, project, None)
        return cls("workspace", workspace)

    def __str__(self) -> str:
        if self.type == "repository":
            return f"{self.workspace}/{self.repository}"
        if self.type == "project":
            return f"{self.workspace}/projects/{self.project}"
        return self.workspace


def from_view_args(
    view_args: Mapping[str, Any] | None, names: Mapping[str, str]
) -> Resource | None:
    """The resource a route's arguments name, or None when they name none."""
    if not view_args:
        return None
    workspace = view_args.get(names["workspace"])
    if not workspace or not isinstance(workspace, str):
        return None
    repository = view_args.get(names["repository"]) or None
    project = view_args.get(names["project"]) or None
    if (repository is not None and not isinstance(repository, str)) or (
        project is not None and not isinstance(project, str)
    ):
        return None
    # tuple.__new__: what Resource(...) does, without a Python-level call on
    # every protected request.
    if repository:
        # A project in the URL of a repository route is checked as well.
        return _new(Resource, ("repository", workspace, project, repository))
    if project:
        return _new(Resource, ("project", workspace, project, None))
    return _new(Resource, ("workspace", workspace, None, None))


_new = tuple.__new__


def reaches(
    bound: Resource | AuthenticatedToken,
    route: Resource | None,
    project_loader: ProjectLoader | None,
) -> bool:
    """Whether a token bound to ``bound`` (its type and resource) may act on
    ``route``."""
    if route is None or route.workspace != bound.workspace:
        return False
    token_type = bound.type
    if token_type == "workspace":
        return True
    if token_type == "repository":
        return route.type == "repository" and route.repository == bound.repository
    if token_type != "project":
        return False
    if route.type == "project":
        return route.project == bound.project
    if route.type != "repository" or route.repository is None:
        return False
    if route.project is not None and route.project != bound.project:
        return False
    if project_loader is None:
        return False
    # Asked on every request, so moving a repository takes effect at once.
    actual = project_loader(route.workspace, route.repository)
    return actual is not None and actual == bound.project


def within(
    bound: Resource | AuthenticatedToken,
    container: Resource | None,
    project_loader: ProjectLoader | None,
) -> bool:
    """Whether a token bound to ``bound`` sits in ``container`` (a workspace or
    a project), or is bound to the container itself: the rule of a listing
    route, whose view then filters with :func:`reaches` per item. Fails closed
    like :func:`reaches`: a repository route is not a container."""
    if container is None or container.workspace != bound.workspace:
        return False
    if container.type == "workspace":
        return bound.type in ("workspace", "project", "repository")
    if container.type != "project" or container.project is None:
        return False
    if bound.type == "workspace":
        return True
    if bound.type == "project":
        return bound.project == container.project
    if bound.type != "repository" or bound.repository is None or project_loader is None:
        return False
    return project_loader(bound.workspace, bound.repository) == container.project
