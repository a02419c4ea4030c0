"""What callers get back: a new token with its secret, and the identity of the
token that authenticated a request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from .bounded import token_actor
from .models import AccessToken
from .resources import reaches
from .resources import Resource
from .state import app_state


@dataclass(frozen=True)
class NewToken:
    """A token just created or rotated. ``secret`` exists only here: show it
    once, then let it go."""

    secret: str
    token: AccessToken

    def __repr__(self) -> str:  # keeps the secret out of logs and tracebacks
        return f"<NewToken {self.token.id} secret=***>"


class AuthenticatedToken(NamedTuple):
    """The token behind the current request, as :data:`current_token` shows it.

    A plain immutable value read on the request path, not a database record:
    it costs no ORM session and cannot be used to change the token.
    """

    id: str
    name: str
    type: str
    workspace: str
    project: str | None
    repository: str | None
    #: As granted at creation.
    scopes: Sequence[str]
    #: ``scopes`` plus everything they imply.
    granted: frozenset[str]
    created_by: str | None
    expires_at: datetime | None
    #: As stored before this request.
    last_used_at: datetime | None = None
    #: The client address allow list (normalised networks), or None for
    #: anywhere.
    allowed_ips: tuple[str, ...] | None = None
    #: The recent clients' addresses as stored before this request.
    recent_ips: tuple[str, ...] = ()

    @property
    def resource(self) -> Resource:
        return Resource(self.type, self.workspace, self.project, self.repository)

    @property
    def actor(self) -> str:
        """How to name this token as the author of a change, as Bitbucket
        does, cut to fit an actor column."""
        return token_actor(self.name)

    def has_scope(self, scope: str) -> bool:
        return scope in self.granted

    def reaches(
        self, workspace: str, project: str | None = None, repository: str | None = None
    ) -> bool:
        """Whether this token may act on that resource, by the binding rules
        of protected routes: how a listing view (``container=True``) filters
        what it shows. A repository is placed in its project by the app's
        ``project_loader``, as on every protected route."""
        state = app_state()
        loader = state.callbacks.project_loader
        route = Resource(
            "repository" if repository else "project" if project else "workspace",
            workspace,
            project,
            repository,
        )
        if loader is None:
            return reaches(self, route, None)
        return reaches(self, route, lambda ws, repo: state.call(loader, ws, repo))
