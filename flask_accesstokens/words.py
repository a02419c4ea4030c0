"""Every sentence about resources that a person or a client reads, in one
place, in the model's words.

Like Flask-Security's messages, an app can read them all here and replace
any of them with ``ACCESSTOKENS_MESSAGES = {"not_for": "..."}``. Placeholders
are ``str.format`` fields: ``{label}`` is a level's label in lower case,
``{resource}`` a resource described ("project API in workspace acme").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .resources import Resource
from .resources import ResourceModel

MESSAGES: dict[str, str] = {
    # the request path
    "not_for": "This access token is not for this {label}.",
    "not_for_resource": "This access token is not for this resource.",
    # management
    "no_permission": "You do not have permission to manage the access tokens of {resource}.",
    "no_such_resource": "There is no {label} {name}.",
    "plan": "{Label} access tokens are not available on the plan of {top} {name}.",
    "plan_allows": " It can use {types} access tokens.",
    # what a token of a level reaches
    "works_on_leaf": "A {label} token works on this {label} only.",
    "works_on": (
        "A {label} token works on this {label} and every {inside} in it,"
        " including ones added later."
    ),
    "overview": "All tokens in this {label}",
}


def message(key: str, overrides: Mapping[str, str] | None = None, **values: Any) -> str:
    """Message ``key`` with ``values`` filled in, the app's override first."""
    template = (overrides or {}).get(key) or MESSAGES[key]
    return template.format(**values)


def describe(model: ResourceModel, resource: Resource) -> str:
    """``project API in workspace acme``: a resource in the model's words."""
    parts = [
        f"{model.level(level).label.lower()} {name}" for level, name in resource.values.items()
    ]
    return " in ".join(reversed(parts))


def works_on(model: ResourceModel, level: str, overrides: Mapping[str, str] | None = None) -> str:
    """What a token bound at ``level`` reaches, for the create form."""
    depth = model.depth(level)
    label = model.level(level).label.lower()
    below = [lv.label.lower() for lv in model.levels[depth + 1 :]]
    if not below:
        return message("works_on_leaf", overrides, label=label)
    inside = " and ".join(below) if len(below) < 3 else ", ".join(below[:-1]) + " and " + below[-1]
    return message("works_on", overrides, label=label, inside=inside)


def git_path(model: ResourceModel, resource: Resource) -> str | None:
    """The git URL path of a token bound to ``resource``, with a placeholder
    for what the binding leaves open, or None when no level at or below the
    token's serves git."""
    depth = model.depth(resource.type)
    level = next((lv for lv in model.levels[depth:] if lv.git), None)
    if level is None:
        return None
    parts = [
        resource.values.get(name) or f"<{model.level(name).label.lower()}>"
        for name in model.naming(level.name)
    ]
    return "/" + "/".join(parts) + ".git"
