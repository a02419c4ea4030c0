"""The :class:`AccessTokens` extension: the wiring. ``init_app`` checks the
configuration, builds the app's state, pipeline and service, and registers
the management surfaces; the Python API delegates to the service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import TypeVar

from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from . import config
from .leastprivilege import TokenUsage
from .models import AccessToken
from .models import Base
from .pipeline import Pipeline
from .scopes import default_catalog
from .scopes import ScopeCatalog
from .service import Page
from .service import TokenService
from .state import AppState
from .state import Callbacks
from .state import ENVIRON_KEY
from .state import EXTENSION_KEY
from .state import HEADERS_KEY
from .state import PIPELINE_KEY
from .state import SERVICE_KEY
from .state import STATE_KEY
from .store import RequestStore
from .tokens import NewToken

C = TypeVar("C", bound=Callable[..., Any])

log = logging.getLogger("flask_accesstokens")


#: The headers the pipeline chooses: the app's own of these names are replaced.
_SCOPE_HEADERS = frozenset(("x-oauth-scopes", "x-accepted-oauth-scopes", "x-credential-type"))
#: What a token-authenticated request's answer drops: those, and cookies.
_REPLACED = _SCOPE_HEADERS | {"set-cookie"}


class _DropCookies:
    """WSGI middleware: a response to a token-authenticated request sets no
    cookie, whatever the view or the session interface did, and carries the
    scope headers the pipeline chose (error responses too). Done at the WSGI
    layer because the session cookie is written after every Flask hook.
    It also runs ``first`` once, before the first request is served."""

    def __init__(self, wsgi_app: Callable[..., Any], first: Callable[[], None]) -> None:
        self.wsgi_app = wsgi_app
        self.first: Callable[[], None] | None = first

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.first is not None:
            first, self.first = self.first, None
            first()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            authenticated = ENVIRON_KEY in environ
            extra: list[tuple[str, str]] | None = environ.get(HEADERS_KEY)
            if extra:  # one pass: the pipeline's headers win (and no cookie, as below)
                drop = _REPLACED if authenticated else _SCOPE_HEADERS
                headers = [(k, v) for k, v in headers if k.lower() not in drop] + extra
            elif authenticated:
                headers = [(k, v) for k, v in headers if k.lower() != "set-cookie"]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


class AccessTokens:
    """Bitbucket-style access tokens for a Flask app.

    ::

        db = SQLAlchemy()
        tokens = AccessTokens()
        tokens.init_app(app, db=db)

    ``init_app`` sets every ``ACCESSTOKENS_*`` key it uses with ``setdefault``
    and checks each, raising :class:`ValueError` naming a bad one; see
    :doc:`/config`. One extension object may serve several apps: each app's
    state lives on the app.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        app: Flask | None = None,
        db: SQLAlchemy | None = None,
        *,
        scopes: ScopeCatalog | None = None,
    ) -> None:
        #: The scope catalog of the apps this extension serves. Register an
        #: app's own scopes on it before the app serves requests.
        self.scopes = scopes if scopes is not None else default_catalog()
        self._db = db
        self._callbacks = Callbacks()
        if app is not None:
            self.init_app(app, db=db)

    def init_app(self, app: Flask, db: SQLAlchemy | None = None) -> None:
        """Check the configuration, add the tables to ``db.metadata``, and
        register the management API, admin pages and CLI as configured."""
        db = db if db is not None else self._db
        if db is None:
            raise RuntimeError("AccessTokens needs the Flask-SQLAlchemy db: init_app(app, db=db)")
        settings = config.load(app.config)

        for table in Base.metadata.sorted_tables:
            if table.name not in db.metadata.tables:
                table.to_metadata(db.metadata)

        state = AppState(app, db, settings, self.scopes, self._callbacks)
        app.extensions[EXTENSION_KEY] = self
        app.extensions[STATE_KEY] = state
        app.extensions[PIPELINE_KEY] = Pipeline(state, RequestStore(state))
        app.extensions[SERVICE_KEY] = TokenService(state)
        app.wsgi_app = _DropCookies(  # type: ignore[method-assign]
            app.wsgi_app, lambda: self._check_callbacks(state)
        )
        self._register_surfaces(app, settings)

    @staticmethod
    def _check_callbacks(state: AppState) -> None:
        """Callbacks are registered after ``init_app``, so they are checked
        when the app starts serving: a management API that answers 403 to
        everyone deserves a word in the log."""
        mounted = state.settings.api_url_prefix is not None
        if mounted and state.callbacks.manager_loader is None:
            log.warning(
                "The access-token management API at %s/... answers 403 to everyone:"
                " no manager_loader is registered. Register one with"
                " @tokens.manager_loader, or set ACCESSTOKENS_API_URL_PREFIX = None.",
                state.settings.api_url_prefix,
            )

    @staticmethod
    def _register_surfaces(app: Flask, settings: config.Settings) -> None:
        # Imported here: each surface is optional, and the admin pages need
        # the ``admin`` extra only when they are turned on.
        if settings.api_url_prefix is not None:
            from .api import blueprint as api

            app.register_blueprint(api, url_prefix=settings.api_url_prefix)
        if settings.admin_url_prefix is not None:
            from .admin import blueprint as admin

            app.register_blueprint(admin, url_prefix=settings.admin_url_prefix)
        if settings.cli:
            from .cli import access_tokens

            app.cli.add_command(access_tokens)

    @staticmethod
    def service(app: Flask | None = None) -> TokenService:
        """The management service of ``app`` (default: the current app)."""
        return TokenService.of(app or current_app._get_current_object())  # type: ignore[attr-defined]

    @staticmethod
    def dispose_connections(app: Flask | None = None) -> None:
        """Close the request path's idle database connections now, e.g. in a
        test's teardown or before shutdown. They are also closed when the app
        goes away, and never shared with a forked child."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        Pipeline.of(app).store.dispose()

    # -- callbacks ------------------------------------------------------------

    def project_loader(self, callback: C) -> C:
        """Register ``callback(workspace, repository) -> project key | None``.
        Project tokens reach a repository only through it; without it they
        reach none (fail closed)."""
        self._callbacks.project_loader = callback
        return callback

    def manager_loader(self, callback: C) -> C:
        """Register ``callback(resource) -> user name | None``: who, if anyone,
        may manage tokens on ``resource`` in this request (JSON API and admin
        pages; the CLI and the Python API act as operator)."""
        self._callbacks.manager_loader = callback
        return callback

    def allowed_token_types_loader(self, callback: C) -> C:
        """Register ``callback(workspace) -> token types`` for plan gating:
        e.g. only repository tokens on free workspaces."""
        self._callbacks.allowed_types_loader = callback
        return callback

    def resource_exists(self, callback: C) -> C:
        """Register ``callback(resource) -> bool``. Every management surface
        then refuses to create tokens for resources that do not exist (a
        typo would make a token that works nowhere). Tokens of a deleted
        resource can still be listed and revoked.

        .. versionadded:: 0.2
        """
        self._callbacks.resource_exists = callback
        return callback

    # -- the Python API: one to one onto the service ----------------------------------

    def create_token(
        self,
        *,
        name: str,
        workspace: str,
        scopes: Iterable[str],
        project: str | None = None,
        repository: str | None = None,
        created_by: str | None = None,
        expires_at: datetime | None = None,
        allowed_ips: Iterable[str] | None = None,
    ) -> NewToken:
        """Create a token; its secret is in the result and nowhere else.
        See :meth:`TokenService.create`.

        .. versionchanged:: 0.2
            ``allowed_ips``: the networks the token may be used from.
        """
        return self.service().create(
            name=name,
            workspace=workspace,
            scopes=scopes,
            project=project,
            repository=repository,
            created_by=created_by,
            expires_at=expires_at,
            allowed_ips=allowed_ips,
        )

    def create_canary(
        self,
        *,
        name: str,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
        created_by: str | None = None,
    ) -> NewToken:
        """Create a canary token: it grants nothing, and using it raises
        :data:`~flask_accesstokens.canary_tripped`. See
        :meth:`TokenService.create_canary`.

        .. versionadded:: 0.2
        """
        return self.service().create_canary(
            name=name,
            workspace=workspace,
            project=project,
            repository=repository,
            created_by=created_by,
        )

    def get_token(self, token_id: str) -> AccessToken | None:
        """The record, or None. See :meth:`TokenService.get`."""
        return self.service().get(token_id)

    def list_tokens(
        self, workspace: str, project: str | None = None, repository: str | None = None
    ) -> list[AccessToken]:
        """Tokens bound to exactly this resource, newest first."""
        return list(self.service().search(workspace, project, repository).items)

    def search_tokens(self, workspace: str, **filters: Any) -> Page:
        """Filtered, paginated search. See :meth:`TokenService.search`."""
        return self.service().search(workspace, **filters)

    def revoke_token(self, token_id: str, revoked_by: str | None = None) -> AccessToken | None:
        """Revoke now, for every worker; idempotent. None if there is no such token."""
        return self.service().revoke(token_id, revoked_by)

    def revoke_resource_tokens(
        self,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
        revoked_by: str | None = None,
    ) -> int:
        """The resource was deleted: revoke the tokens bound to it. Returns how many."""
        return self.service().revoke_resource(workspace, project, repository, revoked_by)

    def rotate_token(
        self,
        token_id: str,
        rotated_by: str | None = None,
        grace: timedelta | None = None,
        *,
        scopes: Iterable[str] | None = None,
    ) -> NewToken | None:
        """Give a token a new secret, with the same scopes or, with
        ``scopes``, fewer: each must be held, directly or by implication
        (``ValueError`` otherwise). None if there is no such token. See
        :meth:`TokenService.rotate`.

        .. versionchanged:: 0.3
            ``scopes``.
        """
        return self.service().rotate(token_id, rotated_by, grace, scopes=scopes)

    def token_usage(self, token_id: str) -> TokenUsage | None:
        """Which scopes served the token's requests, which resources they
        named, and the scopes it never needed. None if there is no such
        token. See :meth:`TokenService.usage`.

        .. versionadded:: 0.3
        """
        return self.service().usage(token_id)

    def notify_overprivileged(self, period: timedelta, now: datetime | None = None) -> int:
        """Send ``token_overprivileged`` for tokens with scopes unused for
        ``period``, once per token and set of scopes; returns how many. See
        :meth:`TokenService.notify_overprivileged`.

        .. versionadded:: 0.3
        """
        return self.service().notify_overprivileged(period, now)

    def prune_tokens(
        self,
        older_than: timedelta,
        *,
        dry_run: bool = False,
        clients_older_than: timedelta | None = None,
    ) -> list[AccessToken]:
        """Delete tokens revoked or expired more than ``older_than`` ago, and
        forget client addresses older than ``clients_older_than`` (default
        ``ACCESSTOKENS_RECENT_CLIENTS_MAX_AGE``). See :meth:`TokenService.prune`."""
        return self.service().prune(
            older_than, dry_run=dry_run, clients_older_than=clients_older_than
        )

    def notify_expiring(self, now: datetime | None = None) -> int:
        """Send the expiry warnings that are due; returns how many. Run it
        from cron (``flask access-tokens notify-expiring``). See
        :meth:`TokenService.notify_expiring`.

        .. versionadded:: 0.2
        """
        return self.service().notify_expiring(now)

    def audit_events(self, token_id: str | None = None, limit: int = 100) -> list[Any]:
        """The audit log, newest first."""
        return list(self.service().events(token_id, limit))
