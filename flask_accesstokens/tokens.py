"""What callers get back: a new token with its secret, and the identity of the
token that authenticated a request."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from .bounded import token_actor
from .models import AccessToken
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
    #: The bound level's name.
    type: str
    #: What it is bound to.
    resource: Resource
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
    def workspace(self) -> str | None:
        return self.resource.workspace

    @property
    def project(self) -> str | None:
        return self.resource.project

    @property
    def repository(self) -> str | None:
        return self.resource.repository

    @property
    def actor(self) -> str:
        """How to name this token as the author of a change, as Bitbucket
        does, cut to fit an actor column."""
        return token_actor(self.name)

    def has_scope(self, scope: str) -> bool:
        return scope in self.granted

    def reaches(
        self,
        resource: Mapping[str, object] | str | None = None,
        project: str | None = None,
        repository: str | None = None,
        *,
        workspace: str | None = None,
    ) -> bool:
        """Whether this token's binding covers that resource, by the rules of
        protected routes: how a listing view (``container=True``) filters
        what it shows. ``resource`` is a mapping (level → name, as routes
        name it: ``{"organization": 7, "project": 42}``); Bitbucket's
        ``reaches(workspace, project, repository)`` works too. A resource
        whose parent is loaded is placed by the app's loader, as on every
        protected route."""
        state = app_state()
        if not isinstance(resource, Mapping):
            if workspace is None:
                workspace = resource
            resource = {"workspace": workspace, "project": project, "repository": repository}
        named = {k: str(v) for k, v in resource.items() if v is not None and v != ""}
        loader = state.callbacks.parent_loader

        def parent(child: Resource) -> str | None:
            found = state.call(loader, child) if loader is not None else None
            return None if found is None else str(found)

        return state.model.reaches(self.resource, named, parent if loader else None)
