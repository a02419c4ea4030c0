"""The request pipeline, top to bottom:

credentials → token format → lookup → checks (expiry, client address, scope,
binding) → usage.

Every failure before the token is known answers like an unknown token, so the
answer reveals nothing; the reason goes only to signals and the (aggregated)
audit log.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from datetime import datetime
from typing import Any
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
from . import words
from .addresses import allows
from .addresses import client_address
from .credentials import presents_token
from .credentials import token_from_header
from .errors import AccessTokenError
from .errors import AddressNotAllowed
from .errors import InsufficientScope
from .errors import InvalidRequest
from .errors import InvalidToken
from .errors import MissingToken
from .errors import StorageUnavailable
from .errors import TooManyFailures
from .errors import WrongResource
from .models import utcnow
from .ratelimit import Throttle
from .requirements import Requirement
from .resources import Resource
from .state import AppState
from .state import ENVIRON_KEY
from .state import HEADERS_KEY
from .state import PIPELINE_KEY
from .state import REFUSAL_KEY
from .state import SERVICE_KEY
from .store import MAX_CACHED_ROWS as MAX_BUILT
from .store import RequestStore
from .store import TokenRow
from .storewrites import NEW_CLIENTS_WINDOW
from .tokenformat import is_well_formed
from .tokens import AuthenticatedToken
from .usage import UsageRecorder

log = logging.getLogger("flask_accesstokens")


class CanaryAlarm(Protocol):
    """What the pipeline needs of the service (found at run time, never
    imported: the service sits above the request path)."""

    def trip_canary(self, token_id: str, client: str | None, uses: int = 1) -> object: ...


#: Tokens whose budget of immediate new-client writes this process saw
#: spent, at most this many remembered.
MAX_REMEMBERED_BUDGETS = 10_000


class Coalescer:
    """Counts uses per key and says when one is due to be reported: the
    first use at once, then at most once per ``interval``, with the uses
    counted in between. Past ``max_keys`` quiet keys are forgotten."""

    def __init__(self, interval: float, max_keys: int = MAX_REMEMBERED_BUDGETS) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._lock = threading.Lock()
        #: key -> (when it was last reported, uses counted since)
        self._seen: dict[str, tuple[float, int]] = {}

    def add(self, key: str) -> int:
        """How many uses to report now (this one included), or 0."""
        now = time.monotonic()
        with self._lock:
            last, pending = self._seen.get(key, (-math.inf, 0))
            if now - last >= self.interval:
                if key not in self._seen and len(self._seen) >= self.max_keys:
                    self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
                self._seen[key] = (now, 0)
                return pending + 1
            self._seen[key] = (last, pending + 1)
            return 0


class Pipeline:
    """One app's request path."""

    def __init__(self, state: AppState, store: RequestStore) -> None:
        settings = state.settings
        self.state = state
        self.store = store
        self.app = state.app
        self.realm = settings.realm
        self.prefix = settings.token_prefix
        self.model = state.model
        #: ``X-Credential-Type`` per token type, as the model names them.
        self.credential_types = {lv.name: lv.credential_type for lv in state.model.levels}
        self.resolution = settings.last_used_resolution
        self.throttle = (
            Throttle(
                settings.ratelimit,
                settings.ratelimit_storage_uri,
                "accesstokens",
                settings.ratelimit_ipv6_prefix,
            )
            if settings.ratelimit
            else None
        )
        self.scope_headers = settings.scope_headers
        #: Scope tuples already checked against this app's catalog.
        self._checked: set[tuple[str, ...]] = set()
        #: The token built from each row the store handed out, so a cached
        #: row is not decoded into a token again on every request.
        self._built: dict[str, tuple[TokenRow, AuthenticatedToken]] = {}
        #: token id -> until when its new-client budget is known to be spent,
        #: so a flood of new addresses costs one failed UPDATE per worker per
        #: window, not one per request.
        self._budget_spent: dict[str, datetime] = {}
        self._canary_uses = Coalescer(settings.failure_audit_interval.total_seconds())
        self.usage = UsageRecorder(store, state.catalog, self.resolution)

    @staticmethod
    def of(app: Flask) -> Pipeline:
        return cast(Pipeline, app.extensions[PIPELINE_KEY])

    def verify(
        self,
        requirement: Requirement,
        *,
        view_args: dict[str, Any] | None = None,
        client: str | None = None,
    ) -> AuthenticatedToken | None:
        """Authenticate the current request and check scopes and binding.
        Raises :class:`AccessTokenError` (400, 401, 403, 429 or 503).

        A gateway's check decides about another request: it passes that
        request's route arguments and client instead of its own."""
        scopes = requirement.scopes
        if scopes not in self._checked:
            self.state.catalog.check_known(scopes)  # an app's own scopes
            self._checked.add(scopes)
        req = request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ
        if client is None:
            client = environ.get("REMOTE_ADDR")
        if view_args is None:
            view_args = req.view_args
        try:
            # 1. credentials; an optional route leaves the app's own alone
            if requirement.optional and not presents_token(
                environ.get("HTTP_AUTHORIZATION"), self.prefix
            ):
                return None
            secret = self._credentials(environ, client)
            if secret is None:
                if requirement.optional:
                    return None
                raise MissingToken()
            # 2. token format, 3. lookup, 4a. the token's own state and the
            # client's address
            now = utcnow()
            token = self.authenticate(secret, client, now)
            if self.scope_headers:
                environ[HEADERS_KEY] = [
                    ("X-OAuth-Scopes", ", ".join(token.scopes)),
                    ("X-Accepted-OAuth-Scopes", ", ".join(scopes)),
                    ("X-Credential-Type", self.credential_types[token.type]),
                ]
            # 4b. scope, then binding
            granted = token.granted
            if granted.isdisjoint(scopes) if requirement.any_of else not granted.issuperset(scopes):
                self._failed("insufficient_scope", token.id, client)
                raise InsufficientScope(required=scopes, granted=token.scopes)
            named: dict[str, str] | None = None
            if requirement.bind:
                bound, named = self._binds(token, view_args, requirement)
                if not bound:
                    self._failed("wrong_resource", token.id, client)
                    raise WrongResource(self._not_for(named), required=scopes)
        except AccessTokenError as e:
            e.realm = self.realm
            environ[REFUSAL_KEY] = e
            raise
        # 5. usage
        self.usage.record(token, requirement, None if requirement.container else named, now)
        self._accept(token, client, environ, now)
        return token

    def _binds(
        self, token: AuthenticatedToken, view_args: dict[str, Any] | None, requirement: Requirement
    ) -> tuple[bool, dict[str, str]]:
        """Whether the token is bound to what the route names, and what it
        names (level → name): for the usage record, or the refusal's words.
        A ``resource=`` resolver names an object the URL does not nest; its
        None is refused like another resource, in words that say nothing of
        what it found."""
        model = self.model
        check = model.within if requirement.container else model.reaches
        if requirement.resource is not None:
            try:
                found = self.app.ensure_sync(requirement.resource)(**(view_args or {}))
            except SQLAlchemyError:
                raise StorageUnavailable() from None
            try:
                named = {} if found is None else model.resource(found).values
            except (TypeError, ValueError):
                named = {}
            if named and check(token.resource, named, self._parent_loader):
                return True, named
            return False, {}
        named = model.from_route(view_args)
        return check(token.resource, named, self._parent_loader), named

    def _not_for(self, named: dict[str, str]) -> str:
        """The refusal in the model's words: "not for this project"."""
        model = self.model
        overrides = self.state.settings.messages
        if not named:
            return words.message("not_for_resource", overrides)
        deepest = max(named, key=model.depth)
        return words.message("not_for", overrides, label=model.level(deepest).label.lower())

    def _parent_loader(self, child: Resource) -> str | None:
        """The app's parent loader, asked on every request that needs it, so
        moving a resource takes effect at once."""
        loader = self.state.callbacks.parent_loader
        if loader is None:
            return None
        try:
            found = self.state.call(loader, child)
        except SQLAlchemyError:
            raise StorageUnavailable() from None
        return None if found is None else str(found)

    def _credentials(self, environ: dict[str, Any], client: str | None) -> str | None:
        """The token the request presents, or None. An unreadable header
        counts as a failure for the throttle."""
        try:
            return token_from_header(environ.get("HTTP_AUTHORIZATION"))
        except InvalidRequest:
            self._throttled(client)
            raise

    def identify(self) -> AuthenticatedToken:
        """Authenticate the current request without asking for a scope or a
        resource: for a token's requests about itself (``/access-tokens/self``).
        The allow list still applies. Raises like :meth:`verify`."""
        environ = request.environ
        client: str | None = environ.get("REMOTE_ADDR")
        try:
            secret = self._credentials(environ, client)
            if secret is None:
                raise MissingToken()
            now = utcnow()
            token = self.authenticate(secret, client, now)
        except AccessTokenError as e:
            e.realm = self.realm
            environ[REFUSAL_KEY] = e
            raise
        if self.scope_headers:
            environ[HEADERS_KEY] = [
                ("X-OAuth-Scopes", ", ".join(token.scopes)),
                ("X-Credential-Type", self.credential_types[token.type]),
            ]
        self._accept(token, client, environ, now)
        return token

    def _accept(
        self,
        token: AuthenticatedToken,
        client: str | None,
        environ: dict[str, Any],
        now: datetime,
    ) -> None:
        self.record_use(token, client, environ.get("HTTP_USER_AGENT"), now)
        g._accesstokens_token = token
        environ[ENVIRON_KEY] = token.id
        if signals.token_authenticated.receivers:
            signals.token_authenticated.send(self.app, token=token)

    def authenticate(
        self, secret: str, client: str | None, now: datetime | None = None
    ) -> AuthenticatedToken:
        """The token this secret belongs to, if it may be used ``now``.
        Unknown, malformed, revoked, expired and rotated-out secrets raise
        the same :class:`InvalidToken`."""
        if not is_well_formed(secret, self.prefix):
            raise self._reject("malformed", None, client)
        candidates = self.state.digester.candidates(secret)
        row = self.store.find(candidates)
        if row is None or not (
            hmac.compare_digest(row.digest, candidates[0])
            or any(hmac.compare_digest(row.digest, c) for c in candidates[1:])
        ):
            raise self._reject("unknown", None, client)
        if now is None:
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
        # A valid token from the wrong place: not throttled (the token is
        # good), and decided before scope and binding so no route answers
        # differently.
        if row.allowed_ips is not None and not allows(row.allowed_ips, client):
            self._failed("address_not_allowed", row.id, client)
            raise AddressNotAllowed()
        built = self._built.get(row.digest)
        if built is not None and built[0] is row:  # the same cached row: same token
            return built[1]
        token = AuthenticatedToken(
            row.id,
            row.name,
            row.type,
            Resource.from_key(row.type, row.resource),
            row.scopes,
            self.state.catalog.closure(row.scopes),
            row.created_by,
            row.expires_at,
            row.last_used_at,
            None if row.allowed_ips is None else tuple(row.allowed_ips.split()),
            row.recent_ips,
        )
        if len(self._built) >= MAX_BUILT:
            self._built.clear()
        self._built[row.digest] = (row, token)
        return token

    def record_use(
        self,
        token: AuthenticatedToken,
        client: str | None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Never on the failure path. ``last_used_at``, and the client among
        the recent ones, at most once per ``ACCESSTOKENS_LAST_USED_RESOLUTION``
        per token; a client address the lookup did not list is recorded at
        once, within a small budget per token shared by every worker. A known
        address, on a request where nothing is due, costs no write."""
        if now is None:
            now = utcnow()
        last = token.last_used_at
        due = last is None or now - last >= self.resolution
        address = None
        if client is not None:
            if client in token.recent_ips:
                address = client
            else:
                parsed = client_address(client)
                address = None if parsed is None else str(parsed)
                if address is not None and address not in token.recent_ips:
                    if self._new_client(token, now, client, address, user_agent, due):
                        return
        if due:
            self.store.touch(token.id, now, client, address, user_agent)

    def _new_client(
        self,
        token: AuthenticatedToken,
        now: datetime,
        client: str,
        address: str,
        user_agent: str | None,
        due: bool,
    ) -> bool:
        """Whether this request's usage write is done (or given up): a
        write that failed is not followed by another, so a locked row holds
        a request up for one statement timeout at most."""
        spent_until = self._budget_spent.get(token.id)
        if spent_until is not None and now < spent_until:
            return False
        written = self.store.add_client(token.id, now, client, address, user_agent, due)
        if written is None or written:
            return True
        if len(self._budget_spent) >= MAX_REMEMBERED_BUDGETS:
            self._budget_spent = {k: v for k, v in self._budget_spent.items() if now < v}
            if len(self._budget_spent) >= MAX_REMEMBERED_BUDGETS:
                self._budget_spent.clear()
        self._budget_spent[token.id] = now + NEW_CLIENTS_WINDOW
        return False

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
        retry_after = self.throttle.hit_client(client)
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
        (a direct ``authenticate`` call) there is no answer to wait for.

        Every use is signalled; the audit row and the log line are written
        at most once per canary per ``ACCESSTOKENS_FAILURE_AUDIT_INTERVAL``
        in this process (the first use at once, later ones counted into the
        next), so whoever holds a canary cannot turn requests into writes."""
        uses = self._canary_uses.add(token_id)
        if not uses and not signals.canary_tripped.receivers:
            return
        app = self.app

        def alarm() -> None:
            try:
                with app.app_context():
                    service = cast(CanaryAlarm, app.extensions[SERVICE_KEY])
                    service.trip_canary(token_id, client, uses)
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
