"""What every token service operation shares: the app's session, loading a
record, the audit log and committing. :class:`~flask_accesstokens.TokenService`
is built on it, with leak response (``leaks.py``) and housekeeping
(``housekeeping.py``) beside the core operations (``service.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import bounded
from . import tokenformat
from .errors import TokenValidationError
from .models import AccessToken
from .models import TokenEvent
from .models import TokenNotice
from .models import utcnow
from .pgchange import changes_pending
from .pgchange import settle
from .resources import Resource
from .state import AppState


def resource_of(token: AccessToken) -> Resource:
    return Resource.from_key(token.type, token.resource_key)


class ServiceBase:
    """The session, the audit log and the transaction of one app's service."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.app = state.app
        self.settings = state.settings
        self.catalog = state.catalog
        self.model = state.model

    @property
    def session(self) -> Session:
        return self.state.db.session  # type: ignore[return-value]

    def resolve(
        self,
        resource: Mapping[str, object] | Resource | None,
        workspace: object = None,
        project: object = None,
        repository: object = None,
    ) -> Resource:
        """The resource a caller names, checked against the app's model: a
        mapping, or Bitbucket's keywords. Raises :class:`TokenValidationError`."""
        legacy = {
            k: v
            for k, v in (("workspace", workspace), ("project", project), ("repository", repository))
            if v is not None
        }
        if resource is not None and legacy:
            raise TokenValidationError(
                "resource", f"give resource= or {', '.join(legacy)}, not both"
            )
        if isinstance(resource, Resource):
            resource = resource.values
        if resource is None:
            if not legacy:
                raise TokenValidationError(self.model.levels[0].name, "required")
            resource = legacy
        return self.model.resource(resource)

    def get(self, token_id: str) -> AccessToken | None:
        if not isinstance(token_id, str) or not tokenformat.is_id(token_id):
            return None
        return self.session.get(AccessToken, token_id)

    def _audit(
        self,
        action: str,
        token: AccessToken,
        actor: str | None,
        detail: str | None = None,
        client: str | None = None,
        count: int = 1,
    ) -> None:
        self.session.add(
            TokenEvent(
                at=utcnow(),
                action=action,
                token_id=token.id,
                actor=bounded.actor(actor),
                client=bounded.client(client),
                count=count,
                resource_key=token.resource_key,
                detail=detail,
            )
        )

    def _revoke(self, token: AccessToken, actor: str | None, why: str) -> None:
        token.revoked_at = utcnow()
        token.revoked_by = bounded.actor(actor)
        self._audit("revoked", token, actor=actor, detail=why)

    def _detached(self, token: AccessToken) -> AccessToken:
        """The record as committed, readable after later commits and outside
        the app context: a value to show, not a handle to change."""
        self.session.refresh(token)
        self.session.expunge(token)
        return token

    def _claim_notice(self, token_id: str, kind: str, now: datetime) -> bool:
        """Insert a notice (``token_id``, ``kind``) once: False if another run
        already did. The unique key makes "send at most once" hold across
        overlapping cron runs."""
        try:
            self.session.execute(
                sa.insert(TokenNotice).values(token_id=token_id, kind=kind, sent_at=now)
            )
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            return False
        except BaseException:
            self.session.rollback()
            raise
        return True

    def _commit(self) -> None:
        """Commit; a transaction that changed a token returns only once no
        worker's PostgreSQL cache can still answer with its old state."""
        try:
            changed = changes_pending(self.session, self.settings)
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise
        if changed:
            settle(self.settings)
