"""The request path, top to bottom: header, token, digest, row, scope, binding.

:func:`require_scope` and :func:`require_any_scope` wrap views;
:func:`verify_token_in_request` is the same check for code that builds its own
decorators or handles optional authentication itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Mapping
from functools import wraps
from typing import Any
from typing import cast
from typing import TYPE_CHECKING
from typing import TypeVar

from flask import current_app
from flask import g
from flask import request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.local import LocalProxy

from .credentials import token_from_header
from .errors import AccessTokenError
from .errors import InsufficientScope
from .errors import InvalidRequest
from .errors import InvalidToken
from .errors import MissingToken
from .errors import StorageUnavailable
from .errors import WrongResource
from .resources import from_view_args
from .resources import reaches
from .resources import within
from .scopes import check_known
from .signals import token_authenticated
from .tokens import AuthenticatedToken

if TYPE_CHECKING:  # only for types: the extension sits above this module
    from .extension import _State

F = TypeVar("F", bound=Callable[..., Any])

#: Set in the WSGI environ of a token-authenticated request; responses to such
#: requests lose every ``Set-Cookie`` header (see ``extension.py``).
ENVIRON_KEY = "flask_accesstokens.token"
#: Where ``init_app`` keeps an app's state in ``app.extensions``.
STATE_KEY = "accesstokens.state"


def _current_token() -> AuthenticatedToken | None:
    return cast("AuthenticatedToken | None", g.get("_accesstokens_token"))


#: The token authenticating the current request, or None. Falsy when absent.
current_token: AuthenticatedToken = cast(AuthenticatedToken, LocalProxy(_current_token))


def verify_token_in_request(
    *scopes: str, any_of: bool = False, optional: bool = False, container: bool = False
) -> AuthenticatedToken | None:
    """Authenticate the current request and check scopes and binding.

    :param scopes: all required, or any one with ``any_of``; implied scopes count.
    :param optional: a request without a token passes as anonymous (returns
        None); a bad token is still refused.
    :param container: the route names a workspace or project and lists what
        is inside: tokens bound to it or to anything inside it pass, and the
        view filters with :meth:`AuthenticatedToken.reaches`. A route that
        names no resource at all (``/user``, ``/workspaces``) contains every
        token: the view decides from ``current_token`` what it shows.
    :raises AccessTokenError: 400, 401, 403 or 503, ready to be answered.

    OPTIONS requests pass as anonymous, since CORS preflights never carry
    credentials; a view that handles OPTIONS itself must not act on it.
    """
    state: _State = current_app.extensions[STATE_KEY]
    unknown = [s for s in scopes if s not in state.catalog]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}")
    return _verify(state, scopes, any_of, optional, container)


def _verify(
    state: _State, scopes: tuple[str, ...], any_of: bool, optional: bool, container: bool = False
) -> AuthenticatedToken | None:
    req = request._get_current_object()  # type: ignore[attr-defined]
    if req.method == "OPTIONS":  # CORS preflights carry no credentials
        return None
    environ = req.environ
    client = environ.get("REMOTE_ADDR")
    store = state.store
    throttle = state.throttle
    try:
        header = environ.get("HTTP_AUTHORIZATION")
        if throttle is not None and header:
            throttle.check(client)
        try:
            secret = token_from_header(header)
            if secret is None:
                if optional:
                    return None
                raise MissingToken()
            token: AuthenticatedToken = store.authenticate(secret, client)
        except (InvalidRequest, InvalidToken):
            if throttle is not None:
                throttle.failed(client)
            raise
        granted = token.granted
        held = any(s in granted for s in scopes) if any_of else all(s in granted for s in scopes)
        if not held:
            store.record_failure("insufficient_scope", token.id, client)
            raise InsufficientScope(required=scopes, granted=token.scopes)
        route = from_view_args(req.view_args, state.view_args)
        loader = _project_loader(state) if token.type == "project" or container else None
        if container and _names_nothing(req.view_args, state.view_args):
            pass  # a listing of no one container (``/user``): every token is inside it
        elif not (within if container else reaches)(token, route, loader):
            store.record_failure("wrong_resource", token.id, client)
            raise WrongResource(required=scopes, granted=token.scopes)
    except AccessTokenError as e:
        e.realm = state.realm
        raise
    store.record_use(token, client)
    g._accesstokens_token = token
    environ[ENVIRON_KEY] = token.id
    if token_authenticated.receivers:
        token_authenticated.send(state.app, token=token)
    return token


def _names_nothing(view_args: Mapping[str, Any] | None, names: Mapping[str, str]) -> bool:
    """No workspace, project or repository argument at all: not a malformed one,
    which still fails closed."""
    return not view_args or not any(name in view_args for name in names.values())


def _project_loader(state: _State) -> Callable[[str, str], str | None] | None:
    loader = state.project_loader
    if loader is None:
        return None

    def load(workspace: str, repository: str) -> str | None:
        try:
            return cast("str | None", current_app.ensure_sync(loader)(workspace, repository))
        except SQLAlchemyError:
            raise StorageUnavailable() from None

    return load


def _decorator(
    scopes: tuple[str, ...], any_of: bool, optional: bool, container: bool
) -> Callable[[F], F]:
    check_known(scopes)

    def decorate(view: F) -> F:
        is_async = inspect.iscoroutinefunction(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            _verify(app.extensions[STATE_KEY], scopes, any_of, optional, container)
            if is_async:
                return app.ensure_sync(view)(*args, **kwargs)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def require_scope(
    *scopes: str, optional: bool = False, container: bool = False
) -> Callable[[F], F]:
    """Protect a view: the request needs a token holding *every* scope given
    (directly or by implication) and bound to the resource the route names.

    Unknown scope names raise :class:`ValueError` here, at import time.

    With ``container=True`` the route names a workspace or a project and lists
    what is inside it: a token bound to that container or to anything inside
    it passes, and the view keeps only what
    ``current_token.reaches(workspace, project, repository)`` allows. On a
    route with no workspace, project or repository argument every valid token
    with the scopes passes (the token's own identity, say); a route whose
    resource argument is malformed is still refused.

    .. versionadded:: 0.1
    """
    return _decorator(scopes, any_of=False, optional=optional, container=container)


def require_any_scope(
    *scopes: str, optional: bool = False, container: bool = False
) -> Callable[[F], F]:
    """Like :func:`require_scope`, but any one of the scopes is enough.

    .. versionadded:: 0.1
    """
    return _decorator(scopes, any_of=True, optional=optional, container=container)
