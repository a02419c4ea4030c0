"""The public face of the request pipeline: :func:`require_scope`,
:func:`require_any_scope`, :func:`verify_token_in_request` for code that
builds its own decorators or handles optional authentication,
:func:`carries_token` for apps with a login of their own, and
:data:`current_token`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any
from typing import cast
from typing import TypeVar

from flask import current_app
from flask import g
from flask import request
from werkzeug.local import LocalProxy

from .credentials import presents_token
from .pipeline import Pipeline
from .requirements import ATTRIBUTE
from .requirements import Requirement
from .requirements import ResourceResolver
from .scopes import check_names
from .state import app_state
from .tokens import AuthenticatedToken

F = TypeVar("F", bound=Callable[..., Any])


def _current_token() -> AuthenticatedToken | None:
    return cast("AuthenticatedToken | None", g.get("_accesstokens_token"))


#: The token authenticating the current request, or None. Falsy when absent.
current_token: AuthenticatedToken = cast(AuthenticatedToken, LocalProxy(_current_token))


def verify_token_in_request(
    *scopes: str,
    any_of: bool = False,
    optional: bool = False,
    container: bool = False,
    bind: bool = True,
    resource: ResourceResolver | None = None,
) -> AuthenticatedToken | None:
    """Authenticate the current request and check scopes and binding.

    The parameters mean what they mean on :func:`require_scope`.

    :raises AccessTokenError: 400, 401, 403, 429 or 503, ready to be answered.
    """
    requirement = _requirement(scopes, any_of, optional, container, bind, resource)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Pipeline.of(app).verify(requirement)


def _requirement(
    scopes: tuple[str, ...],
    any_of: bool,
    optional: bool,
    container: bool,
    bind: bool,
    resource: ResourceResolver | None,
) -> Requirement:
    if resource is not None and not callable(resource):
        raise TypeError("resource: must be a callable taking the view's arguments")
    if resource is not None and (container or not bind):
        raise ValueError("resource: cannot be combined with container=True or bind=False")
    if container and not bind:
        raise ValueError("container: cannot be combined with bind=False")
    return Requirement(check_names(scopes), any_of, optional, container, bind, resource)


def _decorator(requirement: Requirement) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        is_async = inspect.iscoroutinefunction(view)
        if is_async:
            _need_asgiref(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            Pipeline.of(app).verify(requirement)
            if is_async:
                return app.ensure_sync(view)(*args, **kwargs)
            return view(*args, **kwargs)

        setattr(wrapper, ATTRIBUTE, requirement)
        return cast(F, wrapper)

    # ``MethodView.decorators = [require_scope(...)]``: the requirement is
    # readable from the decorator itself too.
    setattr(decorate, ATTRIBUTE, requirement)
    return decorate


def _need_asgiref(view: Callable[..., Any]) -> None:
    """Flask runs ``async def`` views through asgiref. Without it a protected
    view would answer 401 to everyone without a token and 500 to every valid
    one, so the mistake is named here, when the view is decorated."""
    try:
        import asgiref.sync  # noqa: F401
    except ImportError:
        raise RuntimeError(
            f"{view.__qualname__} is an async view: install the 'async' extra"
            " (pip install 'Flask-AccessTokens[async]', or 'flask[async]')"
        ) from None


def carries_token() -> bool:
    """Whether the current request presents the extension's credentials:
    ``Bearer <prefix>_...`` with the configured prefix, or Basic
    ``x-token-auth``. Anything else (a JWT, Basic for a user, a session) is
    the app's, so an app can send each request to the login that owns it.

    .. versionadded:: 0.2
    """
    prefix = app_state().settings.token_prefix
    return presents_token(request.environ.get("HTTP_AUTHORIZATION"), prefix)


def require_scope(
    *scopes: str,
    optional: bool = False,
    container: bool = False,
    bind: bool = True,
    resource: ResourceResolver | None = None,
) -> Callable[[F], F]:
    """Protect a view: the request needs a token holding *every* scope given
    (directly or by implication) and bound to the resource the route names.

    Scope names are checked against the app's catalog when the app serves
    its first request, with the near miss named.

    :param optional: a request without the extension's credentials runs the
        view with ``current_token`` None, so the app's own login decides; a
        bad token is still refused.
    :param container: the route names a container (a workspace, an
        organization) and lists what is inside it: a token bound to it or to
        anything inside it passes, and the view keeps only what
        ``current_token.reaches(...)`` allows. On a route naming no resource
        at all, every valid token with the scopes passes.
    :param bind: ``False``: scope only, whatever the token is bound to.
    :param resource: ``resource(**view_args)`` returns the resource (a
        mapping like ``create_token``'s ``resource=``) of an object the URL
        does not nest, or None (refused like another resource). Called only
        once the token is authenticated and holds the scopes.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``bind`` and ``resource``.
    """
    return _decorator(_requirement(scopes, False, optional, container, bind, resource))


def require_any_scope(
    *scopes: str,
    optional: bool = False,
    container: bool = False,
    bind: bool = True,
    resource: ResourceResolver | None = None,
) -> Callable[[F], F]:
    """Like :func:`require_scope`, but any one of the scopes is enough.

    .. versionadded:: 0.1
    """
    return _decorator(_requirement(scopes, True, optional, container, bind, resource))
