"""The forward-auth check, in process: declared routes decided by the same
pipeline as ``require_scope``, for the client the gateway reports, with only
the answers a gateway passes on. Real nginx and Caddy: ``test_gateways_real``."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest
import yaml
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import canary_tripped
from flask_accesstokens.gateway import IDENTITY_HEADERS

CHECK = "/api/access-tokens/check"
GATEWAY_CLIENT = "198.51.100.7"


@pytest.fixture
def gateway(tokens: AccessTokens) -> AccessTokens:
    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline", methods=["GET"])
    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline:write", methods=["POST"])
    tokens.gateway_route("/svc/<workspace>/projects/<project_key>/boards", "project")
    tokens.gateway_route("/svc/<workspace>/hooks", "webhook", "runner", any_of=True, container=True)
    tokens.gateway_route("/svc/status", "repository", bind=False)
    return tokens


def forwarded(method: str, uri: str, address: str = GATEWAY_CLIENT) -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, "X-Forwarded-For": address}


def ask(
    client: Any, method: str, uri: str, secret: str | None = None, address: str = GATEWAY_CLIENT
) -> Any:
    sent = forwarded(method, uri, address)
    if secret is not None:
        sent.update(bearer(secret))
    return client.get(CHECK, headers=sent)


def new(tokens: AccessTokens, scopes: list[str], **resource: str) -> str:
    resource.setdefault("workspace", "acme")
    return tokens.create_token(name="svc", scopes=scopes, **resource).secret  # type: ignore[arg-type]


def test_an_allowed_request_answers_200_with_the_tokens_identity(
    client: Any, gateway: AccessTokens
) -> None:
    created = gateway.create_token(
        name="CI", workspace="acme", repository="api", scopes=["pipeline:write", "repository"]
    )
    response = ask(client, "GET", "/svc/acme/api/builds?page=2", created.secret)
    assert response.status_code == 200
    assert response.headers["X-Token-Id"] == created.token.id
    assert response.headers["X-Token-Type"] == "repository"
    assert response.headers["X-Token-Scopes"] == "pipeline pipeline:write repository"
    assert dict(parse_qsl(response.headers["X-Token-Resource"])) == {
        "workspace": "acme",
        "repository": "api",
    }
    # The same scope headers a protected view's answer carries, and nothing cached.
    assert set(response.headers["X-OAuth-Scopes"].split(", ")) == {"pipeline:write", "repository"}
    assert response.headers["X-Accepted-OAuth-Scopes"] == "pipeline"
    assert response.headers["X-Credential-Type"] == "repo_access_token"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    assert ask(client, "POST", "/svc/acme/api/builds", created.secret).status_code == 200


def test_refusals_are_require_scopes_own(client: Any, gateway: AccessTokens) -> None:
    secret = new(gateway, ["pipeline"], repository="api")
    missing = ask(client, "GET", "/svc/acme/api/builds")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    unknown = ask(client, "GET", "/svc/acme/api/builds", "bbat_garbage")
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    scope = ask(client, "POST", "/svc/acme/api/builds", secret)
    assert scope.status_code == 403
    assert 'error="insufficient_scope", scope="pipeline:write"' in scope.headers["WWW-Authenticate"]
    for elsewhere in ("/svc/acme/lib/builds", "/svc/hobby/api/builds", "/svc/nope/nope/builds"):
        wrong = ask(client, "GET", elsewhere, secret)
        assert wrong.status_code == 403
        assert wrong.get_json()["error"]["message"] == scope.get_json()["error"]["message"] or (
            "not for this" in wrong.get_json()["error"]["message"]
        )


def test_binding_containers_projects_and_scope_only_routes(
    client: Any, gateway: AccessTokens
) -> None:
    project = new(gateway, ["project", "webhook"], project="API")
    assert ask(client, "GET", "/svc/acme/projects/API/boards", project).status_code == 200
    assert ask(client, "GET", "/svc/acme/projects/WEB/boards", project).status_code == 403
    # container=True: a token inside the workspace passes, with either scope.
    assert ask(client, "GET", "/svc/acme/hooks", project).status_code == 200
    assert ask(client, "GET", "/svc/hobby/hooks", project).status_code == 403
    # bind=False: any token with the scope, whatever its binding.
    hobby = new(gateway, ["repository"], workspace="hobby", repository="notes")
    assert ask(client, "GET", "/svc/status", hobby).status_code == 200


def test_unmatched_routes_and_methods_are_refused_before_the_token(
    client: Any, gateway: AccessTokens
) -> None:
    secret = new(gateway, ["pipeline:write"])  # a workspace token: it reaches everything
    for method, uri in [
        ("GET", "/svc/acme/api"),
        ("DELETE", "/svc/acme/api/builds"),
        ("GET", "/svc/acme/api/builds/"),
        ("GET", "/svc/acme/api/builds/x"),
        ("GET", "/elsewhere"),
        ("GET", "/svc/acme/x/../api/builds"),
        ("GET", "/svc/acme%2Fapi/builds"),
    ]:
        response = ask(client, method, uri, secret)
        assert response.status_code == 403, (method, uri)
        assert "WWW-Authenticate" not in response.headers
        assert "X-Token-Id" not in response.headers
    # Duplicate slashes are merged, as nginx and Werkzeug do.
    assert ask(client, "GET", "/svc//acme/api//builds", secret).status_code == 200


def test_only_trusted_gateways_are_believed(app: Flask, client: Any, gateway: AccessTokens) -> None:
    secret = new(gateway, ["pipeline"])
    outside = app.test_client()
    outside.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert ask(outside, "GET", "/svc/acme/api/builds", secret).status_code == 403
    # Disagreeing reports: a client's X-Original-URI beside Caddy's X-Forwarded-Uri.
    spoof = {"X-Original-Method": "GET", "X-Original-URI": "/svc/acme/api/builds"}
    headers = {**forwarded("GET", "/svc/hobby/notes/builds"), **spoof, **bearer(secret)}
    assert client.get(CHECK, headers=headers).status_code == 403
    agreeing = {**forwarded("GET", "/svc/acme/api/builds"), **spoof, **bearer(secret)}
    assert client.get(CHECK, headers=agreeing).status_code == 200


def test_a_configured_gateway_network(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_GATEWAY_PROXIES=["10.1.0.0/16"])
    try:
        tokens.gateway_route("/svc/<workspace>", "repository")
        with app.app_context():
            secret = new(tokens, ["repository"])
        inside = app.test_client()
        inside.environ_base["REMOTE_ADDR"] = "10.1.2.3"
        assert ask(inside, "GET", "/svc/acme", secret).status_code == 200
        assert ask(app.test_client(), "GET", "/svc/acme", secret).status_code == 403  # loopback
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_the_gateways_client_feeds_allow_lists_and_recent_clients(
    client: Any, gateway: AccessTokens
) -> None:
    created = gateway.create_token(
        name="pinned", workspace="acme", scopes=["pipeline"], allowed_ips=["198.51.100.0/24"]
    )
    uri = "/svc/acme/api/builds"
    assert ask(client, "GET", uri, created.secret).status_code == 200
    assert ask(client, "GET", uri, created.secret, address="203.0.113.5").status_code == 403
    # Only the rightmost entry counts: what the client wrote to its left proves nothing.
    spoofed = ask(client, "GET", uri, created.secret, address="198.51.100.9, 203.0.113.5")
    assert spoofed.status_code == 403
    record = gateway.get_token(created.token.id)
    assert record is not None
    assert [c["ip"] for c in record.recent_clients] == ["198.51.100.7"]


def test_throttling_is_a_401_with_retry_after(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_RATELIMIT="2/minute")
    try:
        tokens.gateway_route("/svc/<workspace>", "repository")
        client = app.test_client()
        with app.app_context():
            secret = new(tokens, ["repository"])
        statuses = [ask(client, "GET", "/svc/acme", "bbat_bad").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        throttled = ask(client, "GET", "/svc/acme", "bbat_bad")
        assert throttled.status_code == 401 and int(throttled.headers["Retry-After"]) > 0
        # Per reported client: another client is not throttled, and a valid token never is.
        other = ask(client, "GET", "/svc/acme", "bbat_bad", address="198.51.100.8")
        assert "Retry-After" not in other.headers
        assert ask(client, "GET", "/svc/acme", secret).status_code == 200
        garbled = {**forwarded("GET", "/svc/acme"), "Authorization": "Bearer a b c"}
        assert client.get(CHECK, headers=garbled).status_code == 401
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_malformed_credentials_are_401_never_400(client: Any, gateway: AccessTokens) -> None:
    uri = "/svc/acme/api/builds"
    for value in ["Bearer a b", "Basic !!!", "Bearer " + "x" * 10_000, "Bearer \x01"]:
        response = client.get(CHECK, headers={**forwarded("GET", uri), "Authorization": value})
        assert response.status_code == 401, value
    basic = base64.b64encode(b"x-token-auth:bbat_nope").decode()
    response = client.get(
        CHECK, headers={**forwarded("GET", uri), "Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 401


def test_a_canary_answers_like_an_unknown_token_and_names_the_gateways_client(
    app: Flask, gateway: AccessTokens
) -> None:
    canary = gateway.create_canary(name="decoy", workspace="acme", repository="api")
    seen: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    with canary_tripped.connected_to(receive, app):
        with app.test_client() as client:
            trip = client.get(
                CHECK,
                headers={**forwarded("GET", "/svc/acme/api/builds"), **bearer(canary.secret)},
                buffered=True,
            )
            unknown = ask(client, "GET", "/svc/acme/api/builds", "bbat_unknown")
    assert trip.status_code == unknown.status_code == 401
    assert trip.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"]
    assert trip.data == unknown.data
    assert [(s["token"].id, s["client"]) for s in seen] == [(canary.token.id, GATEWAY_CLIENT)]


def test_envoy_form_carries_the_original_in_its_own_path(
    client: Any, gateway: AccessTokens
) -> None:
    secret = new(gateway, ["pipeline:write"], repository="api")
    sent = {"X-Forwarded-For": GATEWAY_CLIENT, **bearer(secret)}
    assert client.post(f"{CHECK}/svc/acme/api/builds?x=1", headers=sent).status_code == 200
    assert client.get(f"{CHECK}/svc/acme/api/builds", headers=sent).status_code == 200
    assert client.put(f"{CHECK}/svc/acme/api/builds", headers=sent).status_code == 403
    assert client.get(f"{CHECK}/svc/acme/lib/builds", headers=sent).status_code == 403
    assert client.get(f"{CHECK}/svc/acme%2Fapi/builds", headers=sent).status_code == 403
    assert client.get(f"{CHECK}/svc/x/../acme/api/builds", headers=sent).status_code == 403
    assert client.get(f"{CHECK}//svc/acme/api/builds", headers=sent).status_code == 403
    assert client.get(f"{CHECK}/", headers=sent).status_code == 403
    # A forwarding header that disagrees with the path is refused.
    spoof = {**sent, "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/svc/acme/lib/builds"}
    assert client.post(f"{CHECK}/svc/acme/api/builds", headers=spoof).status_code == 403


def test_an_unreachable_database_is_503(app: Flask, db: SQLAlchemy, gateway: AccessTokens) -> None:
    secret = new(gateway, ["pipeline"])
    client = app.test_client()
    assert ask(client, "GET", "/svc/acme/api/builds", secret).status_code == 200
    db.session.remove()
    db.drop_all()
    try:
        assert ask(client, "GET", "/svc/acme/api/builds", secret).status_code == 503
    finally:
        db.create_all()


def test_declarations_are_checked(tokens: AccessTokens) -> None:
    with pytest.raises(ValueError, match="rule"):
        tokens.gateway_route("svc/<workspace>", "repository")
    with pytest.raises(ValueError, match="methods"):
        tokens.gateway_route("/svc/<workspace>", "repository", methods="GET")
    with pytest.raises(ValueError, match="methods"):
        tokens.gateway_route("/svc/<workspace>", "repository", methods=[])
    with pytest.raises(ValueError, match="container"):
        tokens.gateway_route("/svc/<workspace>", "repository", bind=False, container=True)
    with pytest.raises(ValueError):
        tokens.gateway_route("/svc/<workspace>", "repositry")
    with pytest.raises(ValueError):
        tokens.gateway_route("/svc/<workspace", "repository")


def test_the_apps_converters_work(app: Flask, client: Any, tokens: AccessTokens) -> None:
    tokens.gateway_route("/svc/<workspace>/items/<int:item>", "repository")
    secret = new(tokens, ["repository"])
    assert ask(client, "GET", "/svc/acme/items/7", secret).status_code == 200
    assert ask(client, "GET", "/svc/acme/items/seven", secret).status_code == 403


@pytest.fixture
def unmounted(database_uri: str) -> Iterator[Flask]:
    app, db, _ = make_app(database_uri, ACCESSTOKENS_API_URL_PREFIX=None)
    yield app
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_without_the_api_there_is_no_check(unmounted: Flask) -> None:
    assert unmounted.test_client().get(CHECK).status_code == 404


# -- Traefik and Envoy: their documented configs' request shape -------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "gateways"


def test_traefiks_documented_request_shape(client: Any, gateway: AccessTokens) -> None:
    """Traefik's forwardAuth asks with GET at the configured address, with its
    own X-Forwarded-* (trustForwardHeader: false) and the client's headers."""
    config = yaml.safe_load((EXAMPLES / "traefik.yml").read_text())
    forward = config["http"]["middlewares"]["access-tokens"]["forwardAuth"]
    assert forward["trustForwardHeader"] is False
    assert set(forward["authResponseHeaders"]) == set(IDENTITY_HEADERS)
    path = urlsplit(forward["address"]).path
    secret = new(gateway, ["pipeline:write"], repository="api")

    def traefik(method: str, uri: str, authorization: dict[str, str]) -> Any:
        return client.get(
            path,
            headers={
                **authorization,
                "User-Agent": "ci-runner/1.0",
                "Accept-Encoding": "gzip",
                "X-Forwarded-Method": method,
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "svc.example",
                "X-Forwarded-Uri": uri,
                "X-Forwarded-Port": "443",
                "X-Forwarded-Server": "traefik-1",
                "X-Real-Ip": "198.51.100.7",
                "X-Forwarded-For": "198.51.100.7",
            },
        )

    allowed = traefik("POST", "/svc/acme/api/builds?wait=1", bearer(secret))
    assert allowed.status_code == 200
    assert {name: allowed.headers[name] for name in forward["authResponseHeaders"]}
    assert traefik("POST", "/svc/acme/lib/builds", bearer(secret)).status_code == 403
    assert traefik("GET", "/svc/acme/api/builds", {}).status_code == 401


def test_envoys_documented_request_shape(client: Any, gateway: AccessTokens) -> None:
    """Envoy's ext_authz asks with the original method at path_prefix + the
    original path, with only the allowed headers, plus its own."""
    config = yaml.safe_load((EXAMPLES / "envoy.yaml").read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert manager["typed_config"]["use_remote_address"] is True
    ext_authz = manager["typed_config"]["http_filters"][0]["typed_config"]
    assert ext_authz["failure_mode_allow"] is False
    service = ext_authz["http_service"]
    allowed_headers = {
        p["exact"] for p in service["authorization_request"]["allowed_headers"]["patterns"]
    }
    upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    assert {p["exact"] for p in upstream} == {name.lower() for name in IDENTITY_HEADERS}
    secret = new(gateway, ["pipeline:write"], repository="api")

    def envoy(method: str, original: str, authorization: dict[str, str]) -> Any:
        client_headers = {
            **{k.lower(): v for k, v in authorization.items()},
            "user-agent": "ci-runner/1.0",
            "x-forwarded-for": "198.51.100.7",
            "x-token-id": "forged",  # not allowed: Envoy does not send it
        }
        sent = {k: v for k, v in client_headers.items() if k in allowed_headers}
        sent |= {"x-envoy-expected-rq-timeout-ms": "1000", "x-envoy-internal": "true"}
        return client.open(service["path_prefix"] + original, method=method, headers=sent)

    assert envoy("POST", "/svc/acme/api/builds?wait=1", bearer(secret)).status_code == 200
    assert envoy("GET", "/svc/acme/api/builds", bearer(secret)).status_code == 200
    assert envoy("DELETE", "/svc/acme/api/builds", bearer(secret)).status_code == 403
    assert envoy("GET", "/svc/hobby/notes/builds", bearer(secret)).status_code == 403
    assert envoy("GET", "/svc/acme/api/builds", {}).status_code == 401


def test_non_ascii_names_travel_percent_encoded(client: Any, gateway: AccessTokens) -> None:
    created = gateway.create_token(
        name="é", workspace="acme", repository="josé", scopes=["pipeline"]
    )
    for uri in ("/svc/acme/jos%C3%A9/builds", "/svc/acme/jos\xc3\xa9/builds"):  # encoded, raw
        response = ask(client, "GET", uri, created.secret)
        assert response.status_code == 200
        assert response.headers["X-Token-Resource"] == "workspace=acme&repository=jos%C3%A9"
        assert response.headers["X-Token-Resource"].isascii()
    assert ask(client, "GET", "/svc/acme/jose/builds", created.secret).status_code == 403


@pytest.mark.parametrize(
    "value", ["127.0.0.0/8", ["10.0.0.1/8"], ["not a network"], [None], {"a": "b"}]
)
def test_the_proxies_setting_is_checked(database_uri: str, value: Any) -> None:
    with pytest.raises(ValueError, match="ACCESSTOKENS_GATEWAY_PROXIES"):
        make_app(database_uri, ACCESSTOKENS_GATEWAY_PROXIES=value)
