"""The public face of the request pipeline: :func:`require_scope`,
:func:`require_any_scope`, :func:`verify_token_in_request` for code that
builds its own decorators or handles optional authentication, and
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
from werkzeug.local import LocalProxy

from .pipeline import Pipeline
from .scopes import check_names
from .tokens import AuthenticatedToken

F = TypeVar("F", bound=Callable[..., Any])


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
        view filters with :meth:`AuthenticatedToken.reaches`.
    :raises AccessTokenError: 400, 401, 403, 429 or 503, ready to be answered.
    """
    checked = check_names(scopes)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return Pipeline.of(app).verify(checked, any_of, optional, container)


def _decorator(
    scopes: tuple[str, ...], any_of: bool, optional: bool, container: bool
) -> Callable[[F], F]:
    checked = check_names(scopes)

    def decorate(view: F) -> F:
        is_async = inspect.iscoroutinefunction(view)

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            Pipeline.of(app).verify(checked, any_of, optional, container)
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

    A misspelt Bitbucket scope raises :class:`ValueError` here, at import
    time; an app's own scopes are checked against its catalog when the app
    first serves the view.

    With ``container=True`` the route names a workspace or a project and lists
    what is inside it: a token bound to that container or to anything inside
    it passes, and the view keeps only what
    ``current_token.reaches(workspace, project, repository)`` allows. On a
    route with no workspace, project or repository argument at all (the
    token's own identity, say) every valid token with the scopes passes; a
    route whose resource argument is malformed is still refused.

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
