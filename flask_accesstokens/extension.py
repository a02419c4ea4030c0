"""The :class:`AccessTokens` extension: the wiring. ``init_app`` checks the
configuration, builds the app's state, pipeline and service, and registers
the management surfaces; the Python API delegates to the service."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import TypeVar

from flask import current_app
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from . import config
from .errors import AccessTokenError
from .gateway import GATEWAY_KEY
from .gateway import GatewayMap
from .gateway import GatewayRoutes
from .leastprivilege import TokenUsage
from .models import AccessToken
from .models import Base
from .oidc import require_pyjwt
from .pipeline import Pipeline
from .requirements import protected_routes
from .resources import Resource
from .resources import ResourceModel
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
from .state import REFUSAL_KEY
from .state import SERVICE_KEY
from .state import STATE_KEY
from .store import RequestStore
from .tokens import NewToken
from .trustmodels import TrustPolicy
from .trustpolicy import DEFAULT_LIFETIME
from .web import CONVERTER
from .web import NameConverter

C = TypeVar("C", bound=Callable[..., Any])

log = logging.getLogger("flask_accesstokens")


#: The headers the pipeline chooses: the app's own of these names are replaced.
_SCOPE_HEADERS = frozenset(("x-oauth-scopes", "x-accepted-oauth-scopes", "x-credential-type"))
#: What a token-authenticated request's answer drops: those, and cookies.
_REPLACED = _SCOPE_HEADERS | {"set-cookie"}


def restore_challenge(
    refusal: AccessTokenError, status: str, headers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The headers of the extension's refusal (the challenge, ``Retry-After``)
    that an app's or a framework's error handler left out of its own answer,
    added back, as Flask-HTTPAuth does. Only while the answer keeps the
    refusal's status: a handler that turned it into a redirect or a 404 meant
    something else."""
    if not status.startswith(f"{refusal.code} "):
        return headers
    present = {name.lower() for name, _ in headers}
    missing = [(k, v) for k, v in refusal.data["headers"].items() if k.lower() not in present]
    return headers + missing if missing else headers


class _DropCookies:
    """WSGI middleware: a response to a token-authenticated request sets no
    cookie, whatever the view or the session interface did, and carries the
    scope headers the pipeline chose (error responses too). Done at the WSGI
    layer because the session cookie is written after every Flask hook. A
    refusal keeps its challenge whatever handler rendered it.
    It also runs ``first`` once, before the first request is served."""

    def __init__(self, wsgi_app: Callable[..., Any], first: Callable[[], None]) -> None:
        self.wsgi_app = wsgi_app
        self.first: Callable[[], None] | None = first

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        first = self.first
        if first is not None:
            first()  # raises until the app is fit to serve
            self.first = None

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            authenticated = ENVIRON_KEY in environ
            extra: list[tuple[str, str]] | None = environ.get(HEADERS_KEY)
            if extra:  # one pass: the pipeline's headers win (and no cookie, as below)
                drop = _REPLACED if authenticated else _SCOPE_HEADERS
                headers = [(k, v) for k, v in headers if k.lower() not in drop] + extra
            elif authenticated:
                headers = [(k, v) for k, v in headers if k.lower() != "set-cookie"]
            refusal: AccessTokenError | None = environ.get(REFUSAL_KEY)
            if refusal is not None:
                headers = restore_challenge(refusal, status, headers)
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
        resources: ResourceModel | None = None,
    ) -> None:
        #: The scope catalog of the apps this extension serves. Register an
        #: app's own scopes on it before the app serves requests.
        self.scopes = scopes if scopes is not None else default_catalog()
        #: The app's declared resource levels; None: Bitbucket's, with
        #: ``ACCESSTOKENS_VIEW_ARGS``.
        self.resources = resources
        self._db = db
        self._callbacks = Callbacks()
        self._gateway_routes = GatewayRoutes()
        if app is not None:
            self.init_app(app, db=db)

    def init_app(
        self, app: Flask, db: SQLAlchemy | None = None, *, resources: ResourceModel | None = None
    ) -> None:
        """Check the configuration, add the tables to ``db.metadata``, and
        register the management API, admin pages and CLI as configured."""
        db = db if db is not None else self._db
        if db is None:
            raise RuntimeError("AccessTokens needs the Flask-SQLAlchemy db: init_app(app, db=db)")
        if resources is not None:
            self.resources = resources
        declared = self.resources
        if declared is not None and not isinstance(declared, ResourceModel):
            raise TypeError("resources: must be a ResourceModel")
        if declared is not None and "ACCESSTOKENS_VIEW_ARGS" in app.config:
            raise ValueError(
                "ACCESSTOKENS_VIEW_ARGS: not with a declared ResourceModel; each Level's"
                " arg= names its route argument"
            )
        settings = config.load(app.config)
        model = declared or ResourceModel.bitbucket(settings.view_args)
        self.scopes.check_levels(model.names)
        if settings.oidc_issuers:
            require_pyjwt()

        for table in Base.metadata.sorted_tables:
            if table.name not in db.metadata.tables:
                table.to_metadata(db.metadata)

        state = AppState(app, db, settings, self.scopes, self._callbacks, model)
        app.url_map.converters.setdefault(CONVERTER, NameConverter)
        app.extensions[EXTENSION_KEY] = self
        app.extensions[STATE_KEY] = state
        app.extensions[PIPELINE_KEY] = Pipeline(state, RequestStore(state))
        app.extensions[SERVICE_KEY] = TokenService(state)
        app.extensions[GATEWAY_KEY] = GatewayMap(self._gateway_routes, app)
        app.wsgi_app = _DropCookies(  # type: ignore[method-assign]
            app.wsgi_app, lambda: self._check_callbacks(state)
        )
        self._register_surfaces(app, settings, model)
        if hasattr(app, "spec_plugins") or "flask-smorest" in app.extensions:
            # APIFlask, or a flask-smorest Api set up before: their specs
            # learn each protected view's scopes from its decorator.
            self.document_openapi(app)

    @staticmethod
    def _check_callbacks(state: AppState) -> None:
        """Callbacks and views are registered after ``init_app``, so they are
        checked when the app starts serving: every protected view's scopes
        against the app's catalog (a misspelt one fails, naming the view and
        the near miss), and a management API that answers 403 to everyone
        deserves a word in the log."""
        with state.app.app_context():
            for route in protected_routes(state.app):
                where = f"view {route.endpoint!r} ({route.rule})"
                state.catalog.check_known(route.requirement.scopes, where)
        mounted = state.settings.api_url_prefix is not None
        if mounted and state.callbacks.manager_loader is None:
            log.warning(
                "The access-token management API at %s/... answers 403 to everyone:"
                " no manager_loader is registered. Register one with"
                " @tokens.manager_loader, or set ACCESSTOKENS_API_URL_PREFIX = None.",
                state.settings.api_url_prefix,
            )

    @staticmethod
    def _register_surfaces(app: Flask, settings: config.Settings, model: ResourceModel) -> None:
        # Imported here: each surface is optional, and the admin pages need
        # the ``admin`` extra only when they are turned on.
        if settings.api_url_prefix is not None:
            from . import apileaks  # noqa: F401 - adds the leak routes
            from . import oidcapi  # noqa: F401 - adds the exchange and policy routes
            from .api import blueprint as api

            app.register_blueprint(api, url_prefix=settings.api_url_prefix)
        if settings.admin_url_prefix is not None:
            from . import policyadmin  # noqa: F401 - adds the trust-policy pages
            from .admin import blueprint as admin

            app.register_blueprint(admin, url_prefix=settings.admin_url_prefix)
        if settings.cli:
            from . import policycli  # noqa: F401 - adds ``trust-policies``
            from .cli import for_model

            app.cli.add_command(for_model(model))

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

    @staticmethod
    def document_openapi(target: Any) -> None:
        """Document the protected views in an app's own OpenAPI spec: pass a
        flask-smorest ``Api`` (after its ``init_app``, before its
        blueprints) or an APIFlask app. ``init_app`` does this for the ones
        it finds; see :doc:`/frameworks`.

        .. versionadded:: 0.2
        """
        from .openapi import document  # apispec comes with the framework

        if isinstance(target, Flask) and not hasattr(target, "spec_plugins"):
            from .openapi import document_found

            document_found(target)
            return
        document(target)

    # -- callbacks ------------------------------------------------------------

    def parent_loader(self, callback: C) -> C:
        """Register ``callback(resource) -> parent name | None``: the resource
        one level up that holds ``resource``, for levels declared with
        ``loaded_parent`` (asked on every request that needs it, so moving a
        resource takes effect at once). Without it, tokens above such a level
        reach none of its resources (fail closed).

        .. versionadded:: 0.2
        """
        self._callbacks.parent_loader = callback
        return callback

    def project_loader(self, callback: C) -> C:
        """Register ``callback(workspace, repository) -> project key | None``
        (Bitbucket's model): the :meth:`parent_loader` of repositories, with
        the repository's names as arguments. Project tokens reach a
        repository only through it; without it they reach none."""

        def parent(resource: Resource) -> Any:
            return callback(*resource.values.values())

        if inspect.iscoroutinefunction(callback):

            async def parent_async(resource: Resource) -> Any:
                return await callback(*resource.values.values())

            self._callbacks.parent_loader = parent_async
        else:
            self._callbacks.parent_loader = parent
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

    def unauthorized_handler(self, callback: C) -> C:
        """Register ``callback(resource) -> response | None``, asked when
        ``manager_loader`` refuses a visitor of an admin page. Return a
        response (a redirect to the app's sign-in page, say) for a visitor who
        is signed out, or None to keep the 403. Flask-Login apps::

            @tokens.unauthorized_handler
            def sign_in_first(resource):
                if not current_user.is_authenticated:
                    return login_manager.unauthorized()
                return None

        The JSON API never asks it: it answers 403.

        .. versionadded:: 0.3
        """
        self._callbacks.unauthorized_handler = callback
        return callback

    def gateway_route(
        self,
        rule: str,
        *scopes: str,
        methods: Iterable[str] = ("GET",),
        any_of: bool = False,
        bind: bool = True,
        container: bool = False,
    ) -> None:
        """Declare a route of a service behind a gateway, which asks
        ``{prefix}/access-tokens/check`` before letting a request through.
        ``rule`` is a Werkzeug rule (the app's converters work) whose
        arguments name the resource as on a protected view; the scopes and
        options mean what they mean on :func:`require_scope` (``any_of``:
        :func:`require_any_scope`). See :doc:`/gateways`.

        .. versionadded:: 0.2
        """
        self.scopes.check_known(scopes, f"gateway route {rule!r}")
        self._gateway_routes.declare(
            rule, scopes, methods=methods, any_of=any_of, bind=bind, container=container
        )

    # -- the Python API: one to one onto the service ----------------------------------

    def create_token(
        self,
        *,
        name: str,
        scopes: Iterable[str],
        resource: Mapping[str, object] | None = None,
        workspace: object = None,
        project: object = None,
        repository: object = None,
        created_by: str | None = None,
        expires_at: datetime | None = None,
        allowed_ips: Iterable[str] | None = None,
    ) -> NewToken:
        """Create a token bound to ``resource`` (level → name, from the top
        down to the bound level; Bitbucket's model also takes ``workspace``,
        ``project`` and ``repository``). Its secret is in the result and
        nowhere else. See :meth:`TokenService.create`.

        .. versionchanged:: 0.2
            ``allowed_ips``: the networks the token may be used from;
            ``resource``.
        """
        return self.service().create(
            name=name,
            scopes=scopes,
            resource=resource,
            workspace=workspace,
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
        resource: Mapping[str, object] | None = None,
        workspace: object = None,
        project: object = None,
        repository: object = None,
        created_by: str | None = None,
    ) -> NewToken:
        """Create a canary token: it grants nothing, and using it raises
        :data:`~flask_accesstokens.canary_tripped`. See
        :meth:`TokenService.create_canary`.

        .. versionadded:: 0.2
        """
        return self.service().create_canary(
            name=name,
            resource=resource,
            workspace=workspace,
            project=project,
            repository=repository,
            created_by=created_by,
        )

    def get_token(self, token_id: str) -> AccessToken | None:
        """The record, or None. See :meth:`TokenService.get`."""
        return self.service().get(token_id)

    def list_tokens(
        self,
        workspace: object = None,
        project: object = None,
        repository: object = None,
        *,
        resource: Mapping[str, object] | None = None,
    ) -> list[AccessToken]:
        """Tokens bound to exactly this resource, newest first."""
        service = self.service()
        found = service.resolve(resource, workspace, project, repository)
        return list(service.search(found).items)

    def search_tokens(
        self,
        workspace: object = None,
        *,
        resource: Mapping[str, object] | None = None,
        **filters: Any,
    ) -> Page:
        """Filtered, paginated search of a resource's tokens (``exact``, the
        default) or of its subtree. See :meth:`TokenService.search`."""
        service = self.service()
        legacy = {k: filters.pop(k) for k in ("project", "repository") if k in filters}
        found = service.resolve(resource, workspace, **legacy)
        return service.search(found, **filters)

    def revoke_token(self, token_id: str, revoked_by: str | None = None) -> AccessToken | None:
        """Revoke now, for every worker; idempotent. None if there is no such token."""
        return self.service().revoke(token_id, revoked_by)

    def revoke_resource_tokens(
        self,
        workspace: object = None,
        project: object = None,
        repository: object = None,
        revoked_by: str | None = None,
        *,
        resource: Mapping[str, object] | None = None,
    ) -> int:
        """The resource was deleted: revoke the tokens bound to it and to
        everything inside it. Returns how many."""
        service = self.service()
        found = service.resolve(resource, workspace, project, repository)
        return service.revoke_resource(found, revoked_by)

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

    # -- trust policies (OIDC exchange) ------------------------------------------

    def create_trust_policy(
        self,
        *,
        resource: Mapping[str, Any] | Resource,
        issuer: str,
        claims: Mapping[str, Any],
        scopes: Iterable[str],
        lifetime: timedelta = DEFAULT_LIFETIME,
        created_by: str | None = None,
    ) -> TrustPolicy:
        """Let CI jobs whose ID tokens carry ``claims`` exchange them for
        tokens of ``resource``. See :meth:`TokenService.create_trust_policy`.

        .. versionadded:: 0.3
        """
        return self.service().create_trust_policy(
            resource=resource,
            issuer=issuer,
            claims=claims,
            scopes=scopes,
            lifetime=lifetime,
            created_by=created_by,
        )

    def delete_trust_policy(self, policy_id: str, deleted_by: str | None = None) -> bool:
        """Delete a policy and revoke the live tokens it minted.

        .. versionadded:: 0.3
        """
        return self.service().delete_trust_policy(policy_id, deleted_by)

    def list_trust_policies(self, resource: Mapping[str, Any] | Resource) -> list[TrustPolicy]:
        """The trust policies of exactly this resource, newest first.

        .. versionadded:: 0.3
        """
        return self.service().list_trust_policies(resource)

    def get_trust_policy(self, policy_id: str) -> TrustPolicy | None:
        """The policy, or None.

        .. versionadded:: 0.3
        """
        return self.service().get_trust_policy(policy_id)

    def audit_events(self, token_id: str | None = None, limit: int = 100) -> list[Any]:
        """The audit log, newest first."""
        return list(self.service().events(token_id, limit))
