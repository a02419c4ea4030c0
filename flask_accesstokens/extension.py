"""The :class:`AccessTokens` extension: configuration, callbacks, and wiring
the store, the management surfaces and the CLI into an app."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from datetime import datetime
from datetime import timedelta
from functools import cached_property
from typing import Any
from typing import TypeVar

from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from . import ratelimit
from . import signals
from . import tokenformat
from .decorators import ENVIRON_KEY
from .decorators import STATE_KEY
from .models import AccessToken
from .models import Base
from .resources import DEFAULT_VIEW_ARGS
from .resources import Resource
from .scopes import default_catalog
from .scopes import ScopeCatalog
from .scopes import TOKEN_TYPES
from .store import MAX_ROTATION_GRACE
from .store import StoreConfig
from .store import TokenStore
from .tokens import NewToken

C = TypeVar("C", bound=Callable[..., Any])


def _duration(value: Any, key: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise ValueError(f"{key} must be a timedelta or a number of seconds, not {value!r}")


class _State:
    """What one app needs on the request path, built from its config."""

    def __init__(self, app: Flask, extension: AccessTokens, db: SQLAlchemy) -> None:
        self.app = app
        self.extension = extension
        self.db = db
        config = app.config
        self.realm: str = config["ACCESSTOKENS_REALM"]
        names = config["ACCESSTOKENS_VIEW_ARGS"]
        # "" never names a view argument: that part of the resource is absent.
        self.view_args = {part: names.get(part) or "" for part in DEFAULT_VIEW_ARGS}
        self.catalog: ScopeCatalog = extension.scopes
        self.throttle = ratelimit.from_config(config)

    @property
    def project_loader(self) -> Callable[[str, str], str | None] | None:
        return self.extension._project_loader

    @cached_property
    def store(self) -> TokenStore:
        # Built on first use, so SECRET_KEY may be set after init_app.
        config = self.app.config
        keys = config["ACCESSTOKENS_DIGEST_KEYS"]
        if keys is None:
            fallbacks = config.get("SECRET_KEY_FALLBACKS") or ()
            keys = [config.get("SECRET_KEY"), *fallbacks]
        timeout = config["ACCESSTOKENS_STATEMENT_TIMEOUT"]
        store_config = StoreConfig(
            prefix=tokenformat.check_prefix(config["ACCESSTOKENS_TOKEN_PREFIX"]),
            last_used_resolution=_duration(
                config["ACCESSTOKENS_LAST_USED_RESOLUTION"], "ACCESSTOKENS_LAST_USED_RESOLUTION"
            ),
            rotation_grace=_duration(
                config["ACCESSTOKENS_ROTATION_GRACE"], "ACCESSTOKENS_ROTATION_GRACE"
            ),
            revoke_on_reuse=bool(config["ACCESSTOKENS_REVOKE_ON_REUSE"]),
            max_lifetime=None
            if config["ACCESSTOKENS_MAX_LIFETIME"] is None
            else _duration(config["ACCESSTOKENS_MAX_LIFETIME"], "ACCESSTOKENS_MAX_LIFETIME"),
            failure_audit_interval=_duration(
                config["ACCESSTOKENS_FAILURE_AUDIT_INTERVAL"], "ACCESSTOKENS_FAILURE_AUDIT_INTERVAL"
            ).total_seconds(),
            statement_timeout_ms=None if timeout is None else int(timeout),
        )
        if not timedelta(0) <= store_config.rotation_grace <= MAX_ROTATION_GRACE:
            raise ValueError("ACCESSTOKENS_ROTATION_GRACE must be between 0 and 30 minutes")
        db = self.db
        return TokenStore(
            db,
            lambda: db.engine,
            self.catalog,
            tokenformat.Digester(keys),
            store_config,
            self.signal,
        )

    def signal(self, name: str, **kwargs: Any) -> None:
        getattr(signals, name).send(self.app, **kwargs)


class _DropCookies:
    """WSGI middleware: a response to a token-authenticated request sets no
    cookie, whatever the view or the session interface did. Done at the WSGI
    layer because the session cookie is written after every Flask hook."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if ENVIRON_KEY in environ:
                headers = [(k, v) for k, v in headers if k.lower() != "set-cookie"]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)


class AccessTokens:
    """Bitbucket-style access tokens for a Flask app.

    ::

        db = SQLAlchemy()
        tokens = AccessTokens()
        tokens.init_app(app, db=db)

    Configuration keys, each set with ``setdefault`` by :meth:`init_app`:

    ``ACCESSTOKENS_TOKEN_PREFIX``
        Prefix of every token string, for secret scanners. ``"bbat"``.
    ``ACCESSTOKENS_REALM``
        Realm of the ``WWW-Authenticate`` challenge. ``"api"``.
    ``ACCESSTOKENS_VIEW_ARGS``
        Which route arguments name the workspace, project and repository.
    ``ACCESSTOKENS_DIGEST_KEYS``
        Keys for the token digest, newest first. None: ``SECRET_KEY`` then
        ``SECRET_KEY_FALLBACKS``.
    ``ACCESSTOKENS_LAST_USED_RESOLUTION``
        How stale ``last_used_at`` may get before it is written. One minute.
    ``ACCESSTOKENS_ROTATION_GRACE``
        How long a rotated-out secret keeps working (at most 30 minutes). 0.
    ``ACCESSTOKENS_REVOKE_ON_REUSE``
        Revoke a token when a rotated-out secret is presented after its grace
        window. True.
    ``ACCESSTOKENS_MAX_LIFETIME``
        None, or the longest lifetime a new token may have; then an expiry is
        required.
    ``ACCESSTOKENS_FAILURE_AUDIT_INTERVAL``
        How often failed attempts are written to the audit log, aggregated
        per reason and token or client. One minute.
    ``ACCESSTOKENS_STATEMENT_TIMEOUT``
        Milliseconds a token lookup may take on PostgreSQL. None.
    ``ACCESSTOKENS_API_URL_PREFIX``
        Where the management JSON API is mounted; None turns it off. ``"/api"``.
    ``ACCESSTOKENS_ADMIN_URL_PREFIX``
        Where the admin pages are mounted; None (the default) turns them off.
    ``ACCESSTOKENS_CLI``
        Register the ``flask access-tokens`` commands. True.
    ``ACCESSTOKENS_RATELIMIT``
        Failed authentications allowed per client address, e.g.
        ``"10/minute"``; then 429. None (off). Needs the ``ratelimit`` extra.
    ``ACCESSTOKENS_RATELIMIT_STORAGE_URI``
        Where failures are counted: ``"memory://"`` (one process) or
        ``"redis://host:6379"`` (many workers and hosts).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        app: Flask | None = None,
        db: SQLAlchemy | None = None,
        *,
        scopes: ScopeCatalog | None = None,
    ) -> None:
        #: The scope catalog shared by every app this extension serves.
        self.scopes = scopes if scopes is not None else default_catalog()
        self._db = db
        self._project_loader: Callable[[str, str], str | None] | None = None
        self._manager_loader: Callable[[Resource], str | None] | None = None
        self._allowed_types_loader: Callable[[str], Iterable[str]] | None = None
        if app is not None:
            self.init_app(app, db=db)

    def init_app(self, app: Flask, db: SQLAlchemy | None = None) -> None:
        """Configure ``app``, add the tables to ``db.metadata``, and register
        the management API, admin pages and CLI as configured."""
        db = db if db is not None else self._db
        if db is None:
            raise RuntimeError("AccessTokens needs the Flask-SQLAlchemy db: init_app(app, db=db)")
        config = app.config
        config.setdefault("ACCESSTOKENS_TOKEN_PREFIX", "bbat")
        config.setdefault("ACCESSTOKENS_REALM", "api")
        config.setdefault("ACCESSTOKENS_VIEW_ARGS", dict(DEFAULT_VIEW_ARGS))
        config.setdefault("ACCESSTOKENS_DIGEST_KEYS", None)
        config.setdefault("ACCESSTOKENS_LAST_USED_RESOLUTION", timedelta(minutes=1))
        config.setdefault("ACCESSTOKENS_ROTATION_GRACE", timedelta(0))
        config.setdefault("ACCESSTOKENS_REVOKE_ON_REUSE", True)
        config.setdefault("ACCESSTOKENS_MAX_LIFETIME", None)
        config.setdefault("ACCESSTOKENS_FAILURE_AUDIT_INTERVAL", timedelta(minutes=1))
        config.setdefault("ACCESSTOKENS_STATEMENT_TIMEOUT", None)
        config.setdefault("ACCESSTOKENS_API_URL_PREFIX", "/api")
        config.setdefault("ACCESSTOKENS_ADMIN_URL_PREFIX", None)
        config.setdefault("ACCESSTOKENS_CLI", True)
        config.setdefault("ACCESSTOKENS_RATELIMIT", None)
        config.setdefault("ACCESSTOKENS_RATELIMIT_STORAGE_URI", "memory://")
        tokenformat.check_prefix(config["ACCESSTOKENS_TOKEN_PREFIX"])

        for table in Base.metadata.sorted_tables:
            if table.name not in db.metadata.tables:
                table.to_metadata(db.metadata)

        app.extensions["accesstokens"] = self
        app.extensions[STATE_KEY] = _State(app, self, db)
        app.wsgi_app = _DropCookies(app.wsgi_app)  # type: ignore[method-assign]
        self._register_surfaces(app)

    def _register_surfaces(self, app: Flask) -> None:
        # Imported here: each surface is optional, and the admin pages need
        # the ``admin`` extra only when they are turned on.
        config = app.config
        if config["ACCESSTOKENS_API_URL_PREFIX"] is not None:
            from .api import blueprint as api

            app.register_blueprint(
                api, url_prefix=config["ACCESSTOKENS_API_URL_PREFIX"].rstrip("/")
            )
        if config["ACCESSTOKENS_ADMIN_URL_PREFIX"] is not None:
            from .admin import blueprint as admin

            app.register_blueprint(
                admin, url_prefix=config["ACCESSTOKENS_ADMIN_URL_PREFIX"].rstrip("/")
            )
        if config["ACCESSTOKENS_CLI"]:
            from .cli import access_tokens

            app.cli.add_command(access_tokens)

    @staticmethod
    def state(app: Flask | None = None) -> _State:
        """This app's state; raises if ``init_app`` was not called on it."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return app.extensions[STATE_KEY]  # type: ignore[no-any-return]
        except KeyError:
            raise RuntimeError("AccessTokens.init_app() was not called on this app") from None

    # -- callbacks ------------------------------------------------------------

    def project_loader(self, callback: C) -> C:
        """Register ``callback(workspace, repository) -> project key | None``.
        Project tokens reach a repository only through it; without it they
        reach none (fail closed)."""
        self._project_loader = callback
        return callback

    def manager_loader(self, callback: C) -> C:
        """Register ``callback(resource) -> user name | None``: who, if anyone,
        may manage tokens on ``resource`` in this request."""
        self._manager_loader = callback
        return callback

    def allowed_token_types_loader(self, callback: C) -> C:
        """Register ``callback(workspace) -> token types`` for plan gating:
        e.g. only repository tokens on free workspaces."""
        self._allowed_types_loader = callback
        return callback

    def manager_of(self, resource: Resource) -> str | None:
        if self._manager_loader is None:
            return None
        result = current_app.ensure_sync(self._manager_loader)(resource)
        return result if isinstance(result, str) and result else None

    def plan_refusal(self, resource: Resource) -> str | None:
        """Why ``resource`` cannot get new tokens on its workspace's plan, or
        None when it can. Every management surface asks this."""
        allowed = self.allowed_token_types(resource.workspace)
        if resource.type in allowed:
            return None
        message = (
            f"{resource.type.capitalize()} access tokens are not available on the plan of"
            f" workspace {resource.workspace}."
        )
        if allowed:
            message += f" It can use {' and '.join(allowed)} access tokens."
        return message

    def allowed_token_types(self, workspace: str) -> tuple[str, ...]:
        if self._allowed_types_loader is None:
            return TOKEN_TYPES
        allowed = set(current_app.ensure_sync(self._allowed_types_loader)(workspace))
        return tuple(t for t in TOKEN_TYPES if t in allowed)

    # -- the Python API -------------------------------------------------------

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
    ) -> NewToken:
        """Create a token; its secret is in the result and nowhere else.

        Raises :class:`ValueError` (``TokenValidationError``, with ``field``)
        and writes nothing when any argument is bad.
        """
        return self.state().store.create(
            name=name,
            workspace=workspace,
            project=project,
            repository=repository,
            scopes=scopes,
            created_by=created_by,
            expires_at=expires_at,
        )

    def get_token(self, token_id: str) -> AccessToken | None:
        return self.state().store.get(token_id)

    def list_tokens(
        self, workspace: str, project: str | None = None, repository: str | None = None
    ) -> list[AccessToken]:
        """Tokens bound to exactly this resource, newest first."""
        return list(self.state().store.search(workspace, project, repository).items)

    def revoke_token(self, token_id: str, revoked_by: str | None = None) -> AccessToken | None:
        """Revoke now, for every worker; idempotent. None if there is no such token."""
        return self.state().store.revoke(token_id, revoked_by)

    def revoke_resource_tokens(
        self,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
        revoked_by: str | None = None,
    ) -> int:
        """The resource was deleted: revoke the tokens bound to it. Returns how many."""
        return self.state().store.revoke_resource(workspace, project, repository, revoked_by)

    def rotate_token(
        self, token_id: str, rotated_by: str | None = None, grace: timedelta | None = None
    ) -> NewToken | None:
        """Give a token a new secret with the same scopes. None if there is no such token."""
        return self.state().store.rotate(token_id, rotated_by, grace)
