"""Forward auth: one token authority for the services behind a gateway.

Services in any language declare their routes here, as Werkzeug rules with
the scopes ``require_scope`` would take::

    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline", methods=["GET"])

A gateway (nginx ``auth_request``, Caddy ``forward_auth``, Traefik
``forwardAuth``, Envoy ``ext_authz``) asks ``{prefix}/access-tokens/check``
before it lets a request through. The check reads the original request
(:mod:`.forwarding`), matches it against the declared routes, and decides
with the very pipeline a protected view uses (scopes, implication, binding,
allow lists, canaries, throttling, audit), for the client the gateway saw.

It answers only what every gateway passes on: 200 with the token's identity
for the upstream, 401 or 403 (throttling is a 401 with ``Retry-After``), and
503 when the database cannot be asked (nginx shows that as a 500: nothing
passes either way).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from typing import cast
from urllib.parse import quote

from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.routing import PathConverter
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .errors import AccessTokenError
from .errors import InvalidRequest
from .errors import InvalidToken
from .errors import TooManyFailures
from .forwarding import NotForwarded
from .forwarding import original_request
from .pipeline import Pipeline
from .requirements import Requirement
from .scopes import check_names
from .state import app_state
from .tokens import AuthenticatedToken

log = logging.getLogger("flask_accesstokens")

#: ``app.extensions`` key of an app's compiled gateway routes.
GATEWAY_KEY = "accesstokens.gateway"
#: The methods the check answers. nginx, Caddy and Traefik ask with GET;
#: Envoy asks with the original method.
CHECK_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: The check's own path under the management API's prefix.
CHECK_PATH = "/access-tokens/check"
#: The identity headers of a 200; the documented configs copy exactly these
#: to the upstream, over anything the client sent.
IDENTITY_HEADERS = ("X-Token-Id", "X-Token-Type", "X-Token-Scopes", "X-Token-Resource")


@dataclass(frozen=True)
class GatewayRoute:
    """One declared upstream route."""

    rule: str
    methods: tuple[str, ...]
    requirement: Requirement


class GatewayRoutes:
    """The upstream routes declared on one extension, shared by its apps.
    Each app compiles them with its own URL converters (:class:`GatewayMap`)."""

    def __init__(self) -> None:
        self.routes: list[GatewayRoute] = []

    def declare(
        self,
        rule: str,
        scopes: Iterable[str],
        *,
        methods: Iterable[str],
        any_of: bool,
        bind: bool,
        container: bool,
    ) -> GatewayRoute:
        """Check and add one route; ``ValueError`` says what is wrong."""
        if not isinstance(rule, str) or not rule.startswith("/"):
            raise ValueError(f"gateway route {rule!r}: a rule is a path starting with '/'")
        if isinstance(methods, str):
            raise ValueError("methods: a list of methods, such as ['GET']")
        wanted = tuple(sorted({m.upper() for m in methods}))
        if not wanted:
            raise ValueError("methods: name at least one method")
        if container and not bind:
            raise ValueError("container: cannot be combined with bind=False")
        requirement = Requirement(check_names(tuple(scopes)), any_of, False, container, bind)
        # A malformed rule fails here; an app's own converter (LookupError
        # here) is known only when the app compiles its map, and checked then.
        with contextlib.suppress(LookupError):
            Map([Rule(rule, methods=wanted, endpoint=0)])
        route = GatewayRoute(rule, wanted, requirement)
        self.routes.append(route)
        return route


class GatewayMap:
    """One app's declared routes as a Werkzeug :class:`Map`, compiled on first
    use with the app's converters, and again when routes were added since."""

    def __init__(self, routes: GatewayRoutes, app: Flask) -> None:
        self.routes = routes
        self.app = app
        self._lock = threading.Lock()
        self._compiled: tuple[int, Map] | None = None

    def _map(self) -> Map:
        compiled = self._compiled
        count = len(self.routes.routes)
        if compiled is None or compiled[0] != count:
            with self._lock:
                rules = [
                    Rule(route.rule, methods=route.methods, endpoint=index)
                    for index, route in enumerate(self.routes.routes[:count])
                ]
                # Slashes were merged already; a rule that only matches with
                # or without a trailing slash is a mismatch, never a redirect.
                url_map = Map(
                    rules,
                    converters=dict(self.app.url_map.converters),
                    merge_slashes=False,
                    redirect_defaults=False,
                )
                compiled = self._compiled = (count, url_map)
        return compiled[1]

    def match(self, method: str, path: str) -> tuple[GatewayRoute, dict[str, Any]] | None:
        """The declared route and its arguments, or None."""
        adapter = self._map().bind("gateway.invalid")
        try:
            index, view_args = adapter.match(path, method=method)
        except HTTPException:  # 404, 405, or a redirect to another form
            return None
        return self.routes.routes[cast(int, index)], dict(view_args)


class NotAGatewayRoute(AccessTokenError, Forbidden):
    """The original request cannot be checked: it matches no declared route,
    or its URI is ambiguous, or it did not come through a trusted gateway.
    No challenge: no token would help."""

    description = "This request is not allowed through the gateway."

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json")]


class Throttled(InvalidToken):
    """A throttled client, as a 401 with ``Retry-After``: nginx's
    ``auth_request`` turns a 429 into a 500."""

    description = "Too many failed authentication attempts. Try again later."


class UnreadableCredentials(InvalidToken):
    """A malformed ``Authorization`` header, as a 401: nginx turns a 400 into
    a 500."""

    error_code = "invalid_request"
    description = "The Authorization header is malformed."


class OriginalPath(PathConverter):
    """The rest of the path, whatever it is: empty, or with a leading or a
    doubled slash. The check judges it, so it never gets a 404."""

    regex = "[\\s\\S]*"  # newlines too: "." stops at one
    part_isolating = False  # not inferred: the regex names no slash


#: The converter's name in the app's URL map.
CONVERTER = "accesstokens_original"


def register_check(blueprint: Blueprint) -> None:
    """Mount the check on ``blueprint``: the header form at ``CHECK_PATH``
    and Envoy's form below it."""

    def converter(state: BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault(CONVERTER, OriginalPath)

    blueprint.record_once(converter)
    blueprint.add_url_rule(CHECK_PATH, "gateway_check", check, methods=CHECK_METHODS)
    blueprint.add_url_rule(
        f"{CHECK_PATH}/<{CONVERTER}:original>",
        "gateway_check_path",
        check,
        methods=CHECK_METHODS,
        merge_slashes=False,  # slashes are the check's to judge: never a redirect
    )


def gateway_map(app: Flask) -> GatewayMap:
    return cast(GatewayMap, app.extensions[GATEWAY_KEY])


def check(original: str | None = None) -> Response:
    """The forward-auth endpoint. ``original`` is set on Envoy's form, whose
    own path carries the original one."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = app_state(app).settings
    try:
        own_uri = None if original is None else _own_uri(str(settings.api_url_prefix))
        forwarded = original_request(request.environ, settings.gateway_proxies, own_uri)
    except NotForwarded as e:
        log.info("gateway check refused: %s", e)
        raise NotAGatewayRoute(realm=settings.realm) from None
    matched = gateway_map(app).match(forwarded.method, forwarded.path)
    if matched is None:
        raise NotAGatewayRoute(realm=settings.realm)
    route, view_args = matched
    try:
        token = Pipeline.of(app).verify(
            route.requirement, view_args=view_args, client=forwarded.client
        )
    except TooManyFailures as e:
        raise Throttled(realm=settings.realm, headers=e.extra_headers) from None
    except InvalidRequest:
        raise UnreadableCredentials(realm=settings.realm) from None
    assert token is not None  # a gateway route is never optional
    return Response(status=200, headers=identity_headers(token))


def _own_uri(prefix: str) -> str:
    """Envoy's form: the original path and query are what follows the
    check's path in the request target, as sent (before any decoding, so
    ``%2F`` stays visible). A server that keeps no raw target gets a 403."""
    environ = request.environ
    raw: str | None = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        raise NotForwarded("the server keeps no raw request target (RAW_URI, REQUEST_URI)")
    own = quote(request.script_root + prefix + CHECK_PATH)
    if not raw.startswith(own + "/"):
        raise NotForwarded("the check's own path is not in its request target as sent")
    return raw[len(own) :]


def identity_headers(token: AuthenticatedToken) -> dict[str, str]:
    """What the upstream learns about the token: its id, its type, every scope
    it holds (implied ones included, space-separated) and its resource as
    ``level=name`` pairs joined with ``&`` (URL-encoded, so a non-ASCII name
    travels in a header)."""
    resource = "&".join(
        f"{level}={quote(name, safe='')}" for level, name in resource_values(token).items()
    )
    return {
        "X-Token-Id": token.id,
        "X-Token-Type": token.type,
        "X-Token-Scopes": " ".join(sorted(token.granted)),
        "X-Token-Resource": resource,
    }


def resource_values(token: AuthenticatedToken) -> dict[str, str]:
    """The token's resource, level -> name from the top, as ``record.resource``
    names it (a repository token: workspace and repository)."""
    return dict(token.resource.values)
