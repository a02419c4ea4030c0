"""The served OpenAPI document of the management API, for the app's model.

``openapi.json`` holds everything that does not depend on the app, and one
level's operations as a template (the top level's, under
``x-accesstokens-level``). Each app's document repeats that template for each
of its levels, at its paths, in its words, with the scopes its catalog lets
that level hold, so the document describes exactly the routes mounted.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources as importlib_resources
from typing import Any

from .resources import Level
from .resources import NAME_MAX_LENGTH
from .resources import ResourceModel
from .scopes import ScopeCatalog

#: What the converter accepts, for clients that check before they send
#: (the service's rule is the authority: no control characters either).
NAME_PATTERN = r"^(?!\.\.?$)[^/\s]{1," + str(NAME_MAX_LENGTH) + "}$"


@cache
def _template() -> str:
    return (importlib_resources.files(__package__) / "openapi.json").read_text("utf-8")


#: The template's levels, where a schema names a resource's levels.
BITBUCKET_LEVELS = ("workspace", "project", "repository")


def camel(level: Level) -> str:
    return "".join(part.capitalize() for part in level.name.split("_"))


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def _name_levels(node: Any, model: ResourceModel) -> None:
    """Every object schema that lists Bitbucket's levels lists the model's."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and set(properties) == set(BITBUCKET_LEVELS):
            node["properties"] = {name: {"type": "string"} for name in model.names}
        for value in node.values():
            _name_levels(value, model)
    elif isinstance(node, list):
        for value in node:
            _name_levels(value, model)


def document(model: ResourceModel, catalog: ScopeCatalog, server: str) -> dict[str, Any]:
    """The document for ``model`` and ``catalog``, served from ``server``."""
    doc: dict[str, Any] = json.loads(_template())
    template = doc.pop("x-accesstokens-level")
    components = doc["components"]
    schemas, parameters = components["schemas"], components["parameters"]
    schemas["Scope"]["enum"] = [scope.name for scope in catalog]
    schemas["AccessToken"]["properties"]["type"]["enum"] = list(model.names)
    token_schema = schemas["AccessToken"]
    if not model.is_bitbucket():  # the Bitbucket model's own fields
        for schema in schemas.values():
            for name in ("workspace", "project", "repository"):
                schema.get("properties", {}).pop(name, None)
                if name in schema.get("required", []):
                    schema["required"].remove(name)
            if "type" in schema.get("properties", {}):
                schema["properties"]["type"]["enum"] = list(model.names)
    _name_levels(schemas, model)
    resource_schema = token_schema["properties"]["resource"]
    resource_schema["properties"] = {
        level.name: {"type": "string", "description": f"{level.label} name."}
        for level in model.levels
    }
    paths: dict[str, Any] = {}
    for level in model.levels:
        for name in model.naming(level.name):
            parameters.setdefault(
                name,
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": NAME_PATTERN},
                    "description": f"{model.level(name).label} name (URL-encoded).",
                },
            )
        words = {
            "Level": camel(level),
            "Label": level.label,
            "label": level.label.lower(),
        }
        text = json.dumps(template["paths"])
        for key, value in words.items():
            text = text.replace("{{" + key + "}}", value)
        base = _openapi_path(model.path(level.name))
        refs = [{"$ref": f"#/components/parameters/{n}"} for n in model.naming(level.name)]
        for suffix, item in json.loads(text).items():
            item["parameters"] = refs + item.get("parameters", [])
            paths[base + suffix] = item
        create = copy.deepcopy(template["create_schema"])
        create["properties"]["scopes"]["items"] = {
            "$ref": f"#/components/schemas/{camel(level)}Scope"
        }
        schemas[f"Create{camel(level)}AccessToken"] = create
        schemas[f"{camel(level)}Scope"] = {
            "type": "string",
            "enum": [scope.name for scope in catalog.allowed_for(level.name)],
            "description": f"A scope a {level.label.lower()} token may hold.",
        }
    self_get = doc["paths"]["/access-tokens/self"]["get"]["responses"]["200"]
    self_get["headers"]["X-Credential-Type"]["schema"]["enum"] = [
        level.credential_type for level in model.levels
    ]
    doc["paths"] = {**paths, **doc["paths"]}
    doc["servers"] = [{"url": server}]
    return doc
