"""The served OpenAPI document is true: schemathesis drives every operation
through the app in-process, and every response must be a documented status,
content type, headers and body, and never a 500."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import reject
from hypothesis import settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

import flask_accesstokens
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.state import app_state

DOCUMENT = "/api/access-tokens/openapi.json"
#: Per operation and mode: enough to walk every branch, small enough for CI.
EXAMPLES = 10
QUERY_PARAMETERS = {"page", "pagelen", "state", "never_used", "last_used_before", "q"}


def reject_unless(condition: bool) -> None:
    if not condition:
        reject()


@pytest.fixture
def database_uri(tmp_path: Path) -> str:
    """SQLite only: this checks the HTTP layer, which is the same on every database."""
    return f"sqlite:///{tmp_path / 'tokens.sqlite'}"


def _labels() -> list[str]:
    path = Path(flask_accesstokens.__file__).with_name("openapi.json")
    document = json.loads(path.read_text("utf-8"))
    return [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    ]


def _fuzzed_app(tokens: AccessTokens) -> None:
    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        # Everyone manages everything, except in one workspace: the fuzzer
        # reaches both the happy paths and the refusal.
        return None if resource.workspace == "locked" else "fuzzer"

    @tokens.allowed_token_types_loader
    def token_types(workspace: str) -> tuple[str, ...]:
        if workspace.startswith("free"):
            return ("repository",)
        return ("repository", "project", "workspace")


def _offline_scanning(app: Flask) -> None:
    """Keys from a loopback port nobody listens on: a fuzzed report with
    signature headers must never make the test fetch GitHub's keys."""
    state = app_state(app)
    keys = {"github": "http://127.0.0.1:9/meta/public_keys/secret_scanning"}
    state.settings = dataclasses.replace(state.settings, secret_scanning_keys=keys)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", _labels())
def test_api_conforms_to_its_document(
    app: Flask, tokens: AccessTokens, label: str, mode: GenerationMode
) -> None:
    _fuzzed_app(tokens)
    _offline_scanning(app)
    schema = schemathesis.openapi.from_wsgi(DOCUMENT, app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def run(case: Any) -> None:
        # Unknown query parameters are ignored, as Bitbucket ignores them,
        # so a case made negative only by adding one proves nothing.
        reject_unless(set(case.query or {}) <= QUERY_PARAMETERS)
        params = case.path_parameters or {}
        if str(params.get("token_id", ""))[:1] in set("01234567"):
            # Random ids are all 404s; in about half the cases, use a real
            # token of this resource so show, revoke and rotate succeed too.
            params["token_id"] = _real_token(tokens, params)
        # Schema-valid input may still be refused (a name of spaces, an
        # expiry in the past), so positive_data_acceptance cannot hold.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    run()


def _real_token(tokens: AccessTokens, params: dict[str, Any]) -> str:
    try:
        new = tokens.create_token(
            name="fuzz",
            workspace=params["workspace"],
            project=params.get("project_key"),
            repository=params.get("repo_slug"),
            scopes=["repository"],
        )
    except ValueError:  # a negative case's path parameters
        return str(params["token_id"])
    return new.token.id


def test_document_is_served_for_this_app(client: Any, tokens: AccessTokens) -> None:
    response = client.get(DOCUMENT)
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api"}]
    schemas = document["components"]["schemas"]
    assert schemas["Scope"]["enum"] == [scope.name for scope in tokens.scopes]
    assert "account" in schemas["WorkspaceScope"]["enum"]
    assert "project" in schemas["ProjectScope"]["enum"]
    assert "project" not in schemas["RepositoryScope"]["enum"]


def test_document_lists_every_route(app: Flask) -> None:
    """Each management route is documented, with the same methods, and the
    document names no route the app lacks."""
    document = app.test_client().get(DOCUMENT).get_json()
    documented = {
        (method.upper(), "/api" + path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("accesstokens_api.") or rule.endpoint.endswith("openapi"):
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)  # converters dropped
        served |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert documented == served
