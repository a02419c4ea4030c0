"""The request pipeline, top to bottom:

credentials → token format → lookup → checks (expiry, scope, binding) → usage.

Every failure before the token is known answers like an unknown token, so the
answer reveals nothing; the reason goes only to signals and the (aggregated)
audit log.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import cast
from typing import Protocol

from flask import after_this_request
from flask import Flask
from flask import g
from flask import has_request_context
from flask import request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from . import signals
from .credentials import token_from_header
from .errors import AccessTokenError
from .errors import InsufficientScope
from .errors import InvalidRequest
from .errors import InvalidToken
from .errors import MissingToken
from .errors import StorageUnavailable
from .errors import TooManyFailures
from .errors import WrongResource
from .models import utcnow
from .ratelimit import Throttle
from .resources import from_view_args
from .resources import reaches
from .resources import within
from .state import AppState
from .state import ENVIRON_KEY
from .state import PIPELINE_KEY
from .state import SERVICE_KEY
from .store import RequestStore
from .tokenformat import is_well_formed
from .tokens import AuthenticatedToken

log = logging.getLogger("flask_accesstokens")


class CanaryAlarm(Protocol):
    """What the pipeline needs of the service (found at run time, never
    imported: the service sits above the request path)."""

    def trip_canary(self, token_id: str, client: str | None) -> object: ...


class Pipeline:
    """One app's request path."""

    def __init__(self, state: AppState, store: RequestStore) -> None:
        settings = state.settings
        self.state = state
        self.store = store
        self.app = state.app
        self.realm = settings.realm
        self.prefix = settings.token_prefix
        self.view_args = settings.view_args
        self.resolution = settings.last_used_resolution
        self.throttle = (
            Throttle(settings.ratelimit, settings.ratelimit_storage_uri, "accesstokens")
            if settings.ratelimit
            else None
        )
        #: Scope tuples already checked against this app's catalog.
        self._checked: set[tuple[str, ...]] = set()

    @staticmethod
    def of(app: Flask) -> Pipeline:
        return cast(Pipeline, app.extensions[PIPELINE_KEY])

    def verify(
        self,
        scopes: tuple[str, ...],
        any_of: bool = False,
        optional: bool = False,
        container: bool = False,
    ) -> AuthenticatedToken | None:
        """Authenticate the current request and check scopes and binding.
        Raises :class:`AccessTokenError` (400, 401, 403, 429 or 503)."""
        if scopes not in self._checked:
            self.state.catalog.check_known(scopes)  # an app's own scopes
            self._checked.add(scopes)
        environ = request.environ
        client: str | None = environ.get("REMOTE_ADDR")
        try:
            # 1. credentials
            try:
                secret = token_from_header(environ.get("HTTP_AUTHORIZATION"))
            except InvalidRequest:
                self._throttled(client)
                raise
            if secret is None:
                if optional:
                    return None
                raise MissingToken()
            # 2. token format, 3. lookup, 4a. the token's own state
            token = self.authenticate(secret, client)
            # 4b. scope, then binding
            granted = token.granted
            if not (
                any(s in granted for s in scopes) if any_of else all(s in granted for s in scopes)
            ):
                self._failed("insufficient_scope", token.id, client)
                raise InsufficientScope(required=scopes, granted=token.scopes)
            view_args = request.view_args
            route = from_view_args(view_args, self.view_args)
            loader = self._project_loader() if token.type == "project" or container else None
            if container and not any(name in (view_args or ()) for name in self.view_args.values()):
                pass  # a listing that names no container (``/user``): every token is inside
            elif not (within if container else reaches)(token, route, loader):
                self._failed("wrong_resource", token.id, client)
                raise WrongResource(required=scopes, granted=token.scopes)
        except AccessTokenError as e:
            e.realm = self.realm
            raise
        # 5. usage
        self.record_use(token, client)
        g._accesstokens_token = token
        environ[ENVIRON_KEY] = token.id
        if signals.token_authenticated.receivers:
            signals.token_authenticated.send(self.app, token=token)
        return token

    def authenticate(self, secret: str, client: str | None) -> AuthenticatedToken:
        """The token this secret belongs to, if it may be used now. Unknown,
        malformed, revoked, expired and rotated-out secrets raise the same
        :class:`InvalidToken`."""
        if not is_well_formed(secret, self.prefix):
            raise self._reject("malformed", None, client)
        candidates = self.state.digester.candidates(secret)
        row = self.store.find(candidates)
        if row is None or not any(hmac.compare_digest(row.digest, c) for c in candidates):
            raise self._reject("unknown", None, client)
        now = utcnow()
        if row.valid_until is not None and row.valid_until <= now:
            self._reused(row.id, client, row.revoked_at is None)
            raise self._reject("rotated", row.id, client)
        if row.revoked_at is not None:
            raise self._reject("revoked", row.id, client)
        if row.expires_at is not None and row.expires_at <= now:
            raise self._reject("expired", row.id, client)
        if row.canary:
            # Exactly an unknown token to the client, throttling and the
            # failure's aggregation key included. The alarm is raised after
            # the response, so it adds nothing the client could time.
            self._alarm_after_response(row.id, client)
            raise self._reject("unknown", None, client)
        return AuthenticatedToken(
            row.id,
            row.name,
            row.type,
            row.workspace,
            row.project,
            row.repository,
            row.scopes,
            self.state.catalog.closure(row.scopes),
            row.created_by,
            row.expires_at,
            row.last_used_at,
        )

    def record_use(self, token: AuthenticatedToken, client: str | None) -> None:
        """Never on the failure path, and at most once per
        ``ACCESSTOKENS_LAST_USED_RESOLUTION`` per token."""
        last = token.last_used_at
        if last is None:
            self.store.touch(token.id, utcnow(), client)
            return
        now = utcnow()
        if now - last >= self.resolution:
            self.store.touch(token.id, now, client)

    # -- failures ----------------------------------------------------------------

    def _reject(self, reason: str, token_id: str | None, client: str | None) -> AccessTokenError:
        """The answer to a request whose credentials failed: 401, or 429 once
        the client is over its failure budget."""
        self._throttled(client)
        self._failed(reason, token_id, client)
        return InvalidToken()

    def _throttled(self, client: str | None) -> None:
        if self.throttle is None:
            return
        retry_after = self.throttle.hit(client)
        if retry_after is not None:
            # Over budget: answered without an audit write or a log line.
            raise TooManyFailures(headers={"Retry-After": str(retry_after)})

    def _failed(self, reason: str, token_id: str | None, client: str | None) -> None:
        if signals.token_rejected.receivers:
            signals.token_rejected.send(self.app, reason=reason, token_id=token_id, client=client)
        self.store.count_failure(reason, token_id, client)

    def _alarm_after_response(self, token_id: str, client: str | None) -> None:
        """Load the canary, audit, log and signal once the answer is sent
        (``call_on_close``), in an app context of its own. Outside a request
        (a direct ``authenticate`` call) there is no answer to wait for."""
        app = self.app

        def alarm() -> None:
            try:
                with app.app_context():
                    cast(CanaryAlarm, app.extensions[SERVICE_KEY]).trip_canary(token_id, client)
            except Exception:  # noqa: BLE001 - the answer is sent; only the log is left
                log.exception("could not raise the alarm of canary access token %s", token_id)

        if not has_request_context():
            alarm()
            return

        @after_this_request
        def defer(response: Response) -> Response:
            response.call_on_close(alarm)
            return response

    def _reused(self, token_id: str, client: str | None, active: bool) -> None:
        """A secret rotated out and past its grace window came back: it
        leaked, or a client was never updated. Like GitLab, revoke the token
        (unless ``ACCESSTOKENS_REVOKE_ON_REUSE`` is off): whoever holds the
        old secret may hold the new one too. Only the first reuse writes and
        signals; the rest are counted like every failure."""
        revoked = (
            active
            and self.state.settings.revoke_on_reuse
            and self.store.revoke_for_reuse(token_id, client)
        )
        if revoked or (active and not self.state.settings.revoke_on_reuse):
            signals.token_reused.send(self.app, token_id=token_id, client=client, revoked=revoked)

    def _project_loader(self) -> Callable[[str, str], str | None] | None:
        loader = self.state.callbacks.project_loader
        if loader is None:
            return None
        call = self.state.call

        def load(workspace: str, repository: str) -> str | None:
            try:
                return cast("str | None", call(loader, workspace, repository))
            except SQLAlchemyError:
                raise StorageUnavailable() from None

        return load
