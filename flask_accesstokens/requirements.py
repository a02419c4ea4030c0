"""What a protected view requires, declared once by its decorator.

``require_scope`` attaches a :class:`Requirement` to the view it wraps. The
request pipeline checks it; everything that describes the app reads it from
the same place: the OpenAPI adapters, the gateway routes, ``flask
access-tokens routes`` and the create form's "what this scope opens". So the
scopes are written once, in the decorator, and nothing can drift.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

#: The attribute a protected view carries.
ATTRIBUTE = "__accesstokens_requirement__"

#: ``resource(**view_args)``: the mapping (level -> name) of the object a
#: route acts on, when the URL does not nest it; None when there is none.
ResourceResolver = Callable[..., "Mapping[str, object] | None"]


@dataclass(frozen=True)
class Requirement:
    """The scopes, binding and mode of one protected view."""

    #: All required, or any one with ``any_of``; implied scopes count.
    scopes: tuple[str, ...]
    any_of: bool = False
    #: A request without the extension's credentials passes as anonymous.
    optional: bool = False
    #: The route lists what is inside the container its arguments name.
    container: bool = False
    #: False: scope only, whatever the token is bound to.
    bind: bool = True
    #: Finds the resource of an object the URL does not nest.
    resource: ResourceResolver | None = None


def requirement_of(view: Any) -> Requirement | None:
    """The requirement a view was decorated with, through any ``functools.wraps``
    layers above it (``__wrapped__``), or None for an unprotected view."""
    seen = 0
    while view is not None and seen < 32:
        found = getattr(view, ATTRIBUTE, None)
        if isinstance(found, Requirement):
            return found
        view = getattr(view, "__wrapped__", None)
        seen += 1
    return None


@dataclass(frozen=True)
class ProtectedRoute:
    """One URL rule of the app whose view is protected."""

    rule: str
    endpoint: str
    methods: tuple[str, ...]
    requirement: Requirement


def protected_routes(app: Flask) -> Iterator[ProtectedRoute]:
    """Every URL rule of ``app`` whose view (or a ``MethodView``'s method) is
    protected, in the url map's order. A class-based view contributes one
    entry per protected method."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        methods = tuple(sorted(m for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS")))
        found = requirement_of(view)
        if found is not None:
            yield ProtectedRoute(rule.rule, rule.endpoint, methods, found)
            continue
        view_class = getattr(view, "view_class", None)
        if view_class is None:
            continue
        class_level = [requirement_of(d) for d in getattr(view_class, "decorators", ()) or ()]
        for method in methods:
            handler = getattr(view_class, method.lower(), None)
            found = requirement_of(handler)
            if found is None:
                found = next((r for r in class_level if r is not None), None)
            if found is not None:
                yield ProtectedRoute(rule.rule, rule.endpoint, (method,), found)
