"""Fuzzing the OIDC exchange: arbitrary bodies, JWT-shaped garbage and
genuinely signed tokens with hostile headers and claims. Never a 500, and
nothing minted. ``pytest -m slow`` runs the issue's 10,000 bodies."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm
from oidc_issuer import EC_KEY
from oidc_issuer import Issuer as LocalIssuer
from oidc_issuer import OTHER_RSA_KEY
from oidc_issuer import running_issuer
from test_oidc_exchange import AUDIENCE
from test_oidc_exchange import EXCHANGE
from test_oidc_exchange import GITHUB_CLAIMS
from test_oidc_exchange import oidc_app

from flask_accesstokens import AccessTokens
from flask_accesstokens.models import AccessToken

BUDGET = int(os.environ.get("ACCESSTOKENS_OIDC_FUZZ_EXAMPLES", "400"))
SLOW_BUDGET = int(os.environ.get("ACCESSTOKENS_OIDC_FUZZ_SLOW_EXAMPLES", "10000"))
BUDGETS = [
    pytest.param(BUDGET, id="ci"),
    pytest.param(SLOW_BUDGET, id="slow", marks=pytest.mark.slow),
]
#: What the exchange may answer to a body that mints nothing.
REFUSALS = {400, 401, 413, 415, 503}


@pytest.fixture
def target(tmp_path: Any) -> Iterator[tuple[Flask, LocalIssuer]]:
    with running_issuer() as issuer:
        app, db, tokens = oidc_app(f"sqlite:///{tmp_path / 'fuzz.sqlite'}", issuer)
        with app.app_context():
            tokens.create_trust_policy(
                resource={"workspace": "acme", "repository": "api"},
                issuer="github",
                claims=GITHUB_CLAIMS,
                scopes=["repository"],
            )
            yield app, issuer
            db.session.remove()
            AccessTokens.dispose_connections()
            db.engine.dispose()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def sign_raw(claims: dict[str, Any], kid: str, key: Any) -> str:
    """Sign any claims, as PyJWT's ``encode`` would not (it refuses a
    non-string ``iss``): the verifier must meet them."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm, signer = "ES256", ECAlgorithm(ECAlgorithm.SHA256)
    else:
        algorithm, signer = "RS256", RSAAlgorithm(RSAAlgorithm.SHA256)
    header = {"alg": algorithm, "kid": kid, "typ": "JWT"}
    signing_input = ".".join(
        b64(json.dumps(part, default=str).encode()) for part in (header, claims)
    )
    return signing_input + "." + b64(signer.sign(signing_input.encode(), key))


@st.composite
def hostile_claims(draw: st.DrawFn, issuer: LocalIssuer, now: int) -> dict[str, Any]:
    """Claims near a real token's: each standard one kept, dropped or
    replaced, plus random ones. Never all of the policy's claims at once.
    ``now`` is fixed for a run: Hypothesis replays draws, so they must not
    depend on the clock."""
    base: dict[str, Any] = {
        "iss": issuer.url,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 7200,
        "nbf": now - 5,
        "jti": draw(st.uuids()).hex,
        "sub": "repo:acme/api:ref:refs/heads/main",
        "repository_id": "123456",
        "ref": "refs/heads/main",
    }
    claims: dict[str, Any] = dict(base)
    # Mostly one change to a valid token (so verification passes and policy
    # matching is reached), sometimes many.
    changes = draw(st.sampled_from([0, 1, 1, 1, 2, 5]))
    for _ in range(changes):
        name = draw(st.sampled_from(sorted(base)))
        if draw(st.booleans()):
            claims.pop(name, None)
        else:
            claims[name] = draw(
                json_values | st.integers(min_value=now - 10**6, max_value=now + 10**6)
            )
    claims.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    if claims.get("repository_id") == "123456" and claims.get("ref") == "refs/heads/main":
        claims["repository_id"] = "654321"  # a fuzz case must not be a real match
    return claims


@st.composite
def id_tokens(draw: st.DrawFn, issuer: LocalIssuer, now: int) -> Any:
    kind = draw(st.sampled_from(["json", "text", "jwt-shaped", "signed", "signed", "tampered"]))
    if kind == "json":
        return draw(json_values)
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "jwt-shaped":
        header = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "alg": st.sampled_from(["none", "HS256", "RS256", "ES256", "PS256", ""])
                    | json_values,
                    "kid": st.sampled_from(["rsa-1", "ec-1", "x"]) | json_values,
                    "typ": st.just("JWT"),
                    "jku": st.just("http://127.0.0.1:1/jwks"),
                },
            )
        )
        payload = draw(hostile_claims(issuer, now))
        signature = draw(st.binary(max_size=300))
        return (
            ".".join(b64(json.dumps(part, default=str).encode()) for part in (header, payload))
            + "."
            + b64(signature)
        )
    claims = draw(hostile_claims(issuer, now))
    kid = draw(st.sampled_from(["rsa-1", "ec-1", "unknown"]))
    key = EC_KEY if kid == "ec-1" else issuer.keys.get(kid, OTHER_RSA_KEY)
    if draw(st.booleans()) and kind == "signed":
        key = OTHER_RSA_KEY if kid != "ec-1" else key
    token = sign_raw(claims, kid, key)
    if kind == "tampered":
        header, payload, signature = token.split(".")
        position = draw(st.integers(min_value=0, max_value=len(token) - 1))
        token = token[:position] + draw(st.sampled_from("AZaz09-_.=")) + token[position + 1 :]
    return token


@st.composite
def bodies(draw: st.DrawFn, issuer: LocalIssuer, now: int) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["object", "object", "object", "any-json", "bytes"]))
    content_type = draw(
        st.sampled_from(
            ["application/json"] * 8 + ["text/plain", "application/x-www-form-urlencoded"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=300)), content_type
    if kind == "any-json":
        return json.dumps(draw(json_values)).encode(), content_type
    body: dict[str, Any] = {"token": draw(id_tokens(issuer, now))}
    if draw(st.booleans()):
        body["scopes"] = draw(
            st.lists(st.sampled_from(["repository", "repository:write", "x"]), max_size=3)
            | json_values
        )
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        body[draw(st.text(max_size=6))] = draw(json_values)
    return json.dumps(body).encode(), content_type


@pytest.mark.parametrize("budget", BUDGETS)
def test_no_body_gets_a_500_or_a_token(target: tuple[Flask, LocalIssuer], budget: int) -> None:
    app, issuer = target
    client = app.test_client()
    seen: dict[int, int] = {}
    codes: dict[str, int] = {}

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=bodies(issuer, int(time.time())))
    def run(case: tuple[bytes, str]) -> None:
        body, content_type = case
        answer = client.post(EXCHANGE, data=body, content_type=content_type)
        assert answer.status_code in REFUSALS, (answer.status_code, body[:300])
        assert answer.json["type"] == "error" and answer.json["error"]["code"]
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        codes[answer.json["error"]["code"]] = codes.get(answer.json["error"]["code"], 0) + 1

    run()
    from flask_accesstokens.state import app_state

    minted = app_state().db.session.scalar(sa.select(sa.func.count()).select_from(AccessToken))
    assert minted == 0
    assert sum(seen.values()) >= min(budget, 100)
    # The fuzz reached past the parser and the verifier, to policy matching.
    assert {"invalid-request", "invalid-token", "no-matching-policy"} <= set(codes)
    print(f"\n[oidc fuzz] {sum(seen.values())} bodies: {dict(sorted(codes.items()))}, 0 minted")
