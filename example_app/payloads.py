"""Reading Bitbucket-style JSON request bodies, with field errors in Bitbucket's shape."""

from __future__ import annotations

import json
from typing import Any
from typing import NoReturn

from flask import abort
from flask import request
from werkzeug.wrappers import Response

from .bitbucket import error_body


def invalid(message: str, **fields: str) -> NoReturn:
    body = error_body(message, fields=fields) if fields else error_body(message)
    abort(Response(json.dumps(body), 400, mimetype="application/json"))


def json_object() -> dict[str, Any]:
    if not request.is_json:
        abort(415, description="The request body must be application/json.")
    raw = request.get_data()  # 413 past MAX_CONTENT_LENGTH when declared
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body: Werkzeug stops reading at the bound without a word.
        abort(413, description=f"The request body must be under {limit} bytes.")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # nesting deeper than the parser goes too
        data = None
    if not isinstance(data, dict):
        invalid("The request body must be a JSON object.")
    return data


def text_field(
    data: dict[str, Any], name: str, *, required: bool = False, default: str = ""
) -> str:
    value = data.get(name, None)
    if value is None:
        if required:
            invalid(f"{name} is required.", **{name: "This field is required."})
        return default
    if not isinstance(value, str) or (required and not value.strip()):
        invalid(f"{name} must be a non-empty string.", **{name: "Must be a non-empty string."})
    return value


def bool_field(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        invalid(f"{name} must be true or false.", **{name: "Must be a boolean."})
    return value


def branch_name(data: dict[str, Any], side: str, default: str | None = None) -> str:
    """``{"source": {"branch": {"name": "feature"}}}`` as Bitbucket sends it."""
    value = data.get(side)
    if value is None and default is not None:
        return default
    branch = value.get("branch") if isinstance(value, dict) else None
    name = branch.get("name") if isinstance(branch, dict) else None
    if not isinstance(name, str) or not name.strip():
        invalid(f"{side}.branch.name is required.", **{side: "A branch name is required."})
    return name


def project_key_field(data: dict[str, Any]) -> str | None:
    project = data.get("project")
    if project is None:
        return None
    if not isinstance(project, dict) or not isinstance(project.get("key"), str):
        invalid("project must be an object with a key.", project='Must be {"key": "KEY"}.')
    return str(project["key"])
