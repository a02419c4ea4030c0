"""Bitbucket's published component schemas (tests/data/bitbucket), read as JSON Schema."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

DESCRIPTION = Path(__file__).parents[1] / "data" / "bitbucket" / "api-2.0-subset.json"

#: The links Bitbucket puts on each object, from its description and current docs.
LINKS = {
    "repository": {
        "self", "html", "avatar", "pullrequests", "commits", "forks", "watchers", "downloads",
        "clone", "hooks",
    },
    "pullrequest": {
        "self", "html", "commits", "approve", "diff", "comments", "activity", "merge", "decline",
    },
    "project": {"self", "html", "avatar"},
    "workspace": {
        "self", "html", "avatar", "members", "projects", "repositories", "owners", "snippets",
    },
}  # fmt: skip


def _nullable(node: Any) -> Any:
    """Every property may be null, as Bitbucket answers; ``nullable`` means null too."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        node = {"anyOf": [node, {"type": "null"}]}
    if isinstance(node.get("properties"), dict):
        node["properties"] = {
            name: {"anyOf": [schema, {"type": "null"}]}
            for name, schema in node["properties"].items()
        }
    return node


@cache
def _components() -> dict[str, Any]:
    document = json.loads(DESCRIPTION.read_text(encoding="utf-8"))
    return {"schemas": _nullable(document["components"]["schemas"])}


@cache
def validator(name: str) -> Draft7Validator:
    components = _components()
    assert name in components["schemas"], f"no schema named {name}"
    schema = {"$ref": f"#/components/schemas/{name}", "components": components}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def validate(name: str, instance: Any) -> None:
    """Raise AssertionError listing every way ``instance`` is not a ``name``."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
