"""The app's own OpenAPI spec, told what each protected view requires.

flask-smorest and APIFlask build their specs with apispec, so one apispec
plugin serves both. It reads the scopes from the decorators (the registry in
:mod:`~flask_accesstokens.requirements`), so they are written once and the
spec cannot drift from what the request path checks:

- the security scheme ``accessToken``, ``{"type": "http", "scheme": "bearer"}``;
- on every protected operation, ``security`` naming ``accessToken`` with the
  route's scopes (one requirement per alternative for ``require_any_scope``,
  and ``{}`` for ``optional``), and 401 and 403 responses.

OpenAPI 3.0 lets only OAuth 2 and OpenID Connect schemes list scopes, so
there the lists are empty and the operation's description names the scopes.
Swagger 2.0 has no bearer scheme, and is left alone.

This module needs apispec, which both frameworks bring; the extension
imports it only when one of them is in use.
"""

from __future__ import annotations

import re
from typing import Any
from typing import cast

from apispec import APISpec
from apispec import BasePlugin
from flask import Flask

from .requirements import protected_routes
from .requirements import Requirement

#: The scheme's name in ``components.securitySchemes``.
SCHEME = "accessToken"
#: The scheme itself: a Bearer token (OpenAPI 3).
SECURITY_SCHEME = {"type": "http", "scheme": "bearer"}
#: ``<int:item_id>`` -> ``{item_id}``, as both frameworks write paths.
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

_CHALLENGE = {
    "WWW-Authenticate": {
        "description": "The Bearer challenge (RFC 6750), with the missing scopes.",
        "schema": {"type": "string"},
    }
}
RESPONSES = {
    "401": {
        "description": "No access token, or one that is invalid, revoked or expired.",
        "headers": _CHALLENGE,
    },
    "403": {
        "description": (
            "The access token lacks a required scope, is not for this resource,"
            " or is used from an address it does not allow."
        ),
        "headers": _CHALLENGE,
    },
}


def openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def security(requirement: Requirement, version: tuple[int, int]) -> list[dict[str, Any]]:
    """The ``security`` requirements of a protected operation: alternatives,
    any one of which is enough."""
    with_scopes = version >= (3, 1)
    if not with_scopes:
        found: list[dict[str, Any]] = [{SCHEME: []}]
    elif requirement.any_of:
        found = [{SCHEME: [scope]} for scope in requirement.scopes]
    else:
        found = [{SCHEME: list(requirement.scopes)}]
    if requirement.optional:
        found.append({})
    return found


def scopes_sentence(requirement: Requirement) -> str:
    """The scopes in words, for OpenAPI 3.0 descriptions."""
    names = [f"`{scope}`" for scope in requirement.scopes]
    if not names:
        needs = "any valid access token"
    elif len(names) == 1:
        needs = f"an access token with the scope {names[0]}"
    else:
        joined = ", ".join(names[:-1]) + (" or " if requirement.any_of else " and ") + names[-1]
        which = "one of the scopes" if requirement.any_of else "the scopes"
        needs = f"an access token with {which} {joined}"
    optional = " (optional: without one, the request is anonymous)" if requirement.optional else ""
    return f"Needs {needs}{optional}."


def document_operation(
    operation: dict[str, Any], requirement: Requirement, version: tuple[int, int]
) -> None:
    """Add the requirement to one operation object, keeping what the app
    documented itself (its own security alternatives, its own 401)."""
    existing = operation.setdefault("security", [])
    for alternative in security(requirement, version):
        if alternative not in existing:
            existing.append(alternative)
    responses = operation.setdefault("responses", {})
    for code, response in RESPONSES.items():
        if code not in responses and int(code) not in responses:
            responses[code] = dict(response)
    if version < (3, 1):
        sentence = scopes_sentence(requirement)
        description = operation.get("description") or ""
        if sentence not in description:
            operation["description"] = f"{description}\n\n{sentence}" if description else sentence


class AccessTokenPlugin(BasePlugin):
    """An apispec plugin documenting the protected views of ``app``.

    flask-smorest: ``Api(app, spec_kwargs={"extra_plugins":
    [AccessTokenPlugin(app)]})``, or :meth:`AccessTokens.document_openapi
    <flask_accesstokens.AccessTokens.document_openapi>`; APIFlask:
    ``app.spec_plugins``. ``init_app`` adds it to both when it finds them.

    .. versionadded:: 0.2
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.version = (3, 1)
        self.documented = False
        #: OpenAPI path -> method -> requirement, rebuilt when views are added.
        self._index: dict[str, dict[str, Requirement]] = {}
        self._views = -1

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        version = spec.openapi_version
        self.version = (version.major, version.minor)
        self.documented = version.major >= 3
        if self.documented:
            add_scheme(spec)

    def _requirements(self, path: str) -> dict[str, Requirement]:
        views = len(self.app.view_functions)
        if views != self._views:
            index: dict[str, dict[str, Requirement]] = {}
            for route in protected_routes(self.app):
                methods = index.setdefault(openapi_path(route.rule), {})
                for method in route.methods:
                    methods.setdefault(method.lower(), route.requirement)
            self._index, self._views = index, views
        return self._index.get(path, {})

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not self.documented or path is None or not operations:
            return
        found = self._requirements(path)
        for method, operation in operations.items():
            requirement = found.get(method)
            if requirement is not None and isinstance(operation, dict):
                document_operation(operation, requirement, self.version)


def add_scheme(spec: APISpec) -> None:
    """Declare ``accessToken`` once, unless the app declared it itself."""
    if SCHEME not in spec.components.security_schemes:
        spec.components.security_scheme(SCHEME, dict(SECURITY_SCHEME))


def document(target: Any, app: Flask | None = None) -> AccessTokenPlugin:
    """Attach the plugin to a flask-smorest ``Api`` or an APIFlask app, once.
    Paths a smorest ``Api`` documented before are documented now."""
    plugins: list[Any]
    spec: APISpec | None = None
    if isinstance(getattr(target, "spec_plugins", None), list):  # APIFlask
        app = target
        plugins = target.spec_plugins
    elif isinstance(getattr(target, "spec", None), APISpec):  # flask-smorest's Api
        spec = target.spec
        app = app or getattr(target, "_app", None)
        if not isinstance(spec.plugins, list):
            spec.plugins = list(spec.plugins)
        plugins = cast("list[Any]", spec.plugins)
    else:
        raise TypeError(
            "document_openapi: expected a flask-smorest Api (after its init_app) or an APIFlask app"
        )
    if app is None:
        raise TypeError("document_openapi: the Api has no app yet; call it after api.init_app(app)")
    for plugin in plugins:
        if isinstance(plugin, AccessTokenPlugin) and plugin.app is app:
            return plugin
    plugin = AccessTokenPlugin(app)
    plugins.append(plugin)
    if spec is not None:
        plugin.init_spec(spec)
        # Paths registered before the plugin: apispec keeps them in one dict.
        for path, operations in getattr(spec, "_paths", {}).items():
            plugin.operation_helper(path=path, operations=operations)
    return plugin


def document_found(app: Flask) -> None:
    """What ``init_app`` does: document every spec of ``app`` it can find,
    an APIFlask app's and each flask-smorest ``Api`` already set up."""
    if isinstance(getattr(app, "spec_plugins", None), list):
        document(app)
    smorest = app.extensions.get("flask-smorest", {})
    for entry in smorest.get("apis", {}).values():
        api = entry.get("ext_obj")
        if api is not None and getattr(api, "_app", None) is app:
            document(api, app)
