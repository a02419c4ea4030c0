"""ID-token verification and the key-set cache (``oidc.py``), against a
real issuer on loopback: the contract's attack cases, and how often keys
are fetched."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from oidc_issuer import Issuer as LocalIssuer
from oidc_issuer import OTHER_RSA_KEY
from oidc_issuer import running_issuer

from flask_accesstokens.oidc import Issuer
from flask_accesstokens.oidc import IssuerUnavailable
from flask_accesstokens.oidc import KeySet
from flask_accesstokens.oidc import parse_jwks
from flask_accesstokens.oidc import Refusal
from flask_accesstokens.oidc import Verifier

AUDIENCE = "https://tokens.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with running_issuer() as issuer:
        yield issuer


@pytest.fixture
def clock() -> Clock:
    return Clock()


def verifier_for(issuer: LocalIssuer, clock: Clock, **options: Any) -> Verifier:
    configured = {
        "github": Issuer("github", issuer.url, AUDIENCE, **options),
    }
    return Verifier(configured, clock=clock, timeout=2.0)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_rs256_and_es256_tokens_verify(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    for kid in ("rsa-1", "ec-1"):
        verified = verifier.verify(issuer.sign(issuer.github(), kid=kid))
        assert verified.claims["repository"] == "acme/api"
        assert verified.issuer.name == "github"
        assert len(verified.replay_key) == 64
    assert issuer.jwks_fetches == 1  # one fetch served both keys


def test_alg_none_is_refused_without_a_fetch(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    token = b64({"alg": "none", "kid": "rsa-1"}) + "." + b64(issuer.github()) + "."
    with pytest.raises(Refusal) as e:
        verifier.verify(token)
    assert e.value.code == "invalid-token" and e.value.status == 401
    assert issuer.jwks_fetches == 0


def test_hs256_signed_with_the_public_key_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    """The classic algorithm confusion: the public key, known to all, used
    as an HMAC secret."""
    verifier = verifier_for(issuer, clock)
    public_pem = (
        issuer.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"})
    payload = b64(issuer.github())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(Refusal, match="RS256 or ES256"):
        verifier.verify(token)


def test_an_algorithm_not_of_the_keys_type_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    # An EC key's kid on an RS256 token (signed by the RSA key).
    token = issuer.sign(issuer.github(), kid="ec-1", key=issuer.keys["rsa-1"], algorithm="RS256")
    with pytest.raises(Refusal, match="does not match its key"):
        verifier.verify(token)


def test_a_signature_by_another_key_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    with pytest.raises(Refusal, match="signature"):
        verifier.verify(issuer.sign(issuer.github(), kid="rsa-1", key=OTHER_RSA_KEY))


@pytest.mark.parametrize(
    "aud",
    ["https://other.example", ["https://tokens.example", "https://other.example"], []],
)
def test_a_wrong_or_second_audience_is_refused(issuer: LocalIssuer, clock: Clock, aud: Any) -> None:
    verifier = verifier_for(issuer, clock)
    with pytest.raises(Refusal) as e:
        verifier.verify(issuer.sign(issuer.github(aud=aud)))
    assert e.value.code == "invalid-token"


def test_multiple_audiences_when_configured(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock, multiple_audiences=True, jti=False)
    assert verifier.verify(issuer.sign(issuer.bitbucket())).claims["branchName"] == "main"
    with pytest.raises(Refusal, match="audience"):
        verifier.verify(issuer.sign(issuer.bitbucket(audiences=["a", "b"])))


def test_expired_and_not_yet_valid_tokens_are_refused(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    now = int(time.time())
    with pytest.raises(Refusal, match="expired"):
        verifier.verify(issuer.sign(issuer.github(exp=now - 61, iat=now - 400)))
    with pytest.raises(Refusal, match="not valid yet"):
        verifier.verify(issuer.sign(issuer.github(nbf=now + 120)))
    with pytest.raises(Refusal, match="not valid yet"):
        verifier.verify(issuer.sign(issuer.github(iat=now + 120)))
    # Within the leeway, clock skew is forgiven.
    verifier.verify(issuer.sign(issuer.github(exp=now - 5)))


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "sub", "aud", "iss"])
def test_required_claims(issuer: LocalIssuer, clock: Clock, claim: str) -> None:
    verifier = verifier_for(issuer, clock)
    claims = issuer.github()
    del claims[claim]
    with pytest.raises(Refusal):
        verifier.verify(issuer.sign(claims))


def test_an_untrusted_issuer_is_refused_without_a_fetch(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    with pytest.raises(Refusal, match="issuer"):
        verifier.verify(issuer.sign(issuer.github(iss="http://127.0.0.1:1/evil")))
    assert issuer.discovery_fetches == issuer.jwks_fetches == 0


def test_a_token_that_lives_for_days_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    for exp in (int(time.time()) + 2 * 86400, 10**12, 10**30):
        with pytest.raises(Refusal):
            verifier.verify(issuer.sign(issuer.github(exp=exp)))


def test_a_malleated_ecdsa_signature_is_the_same_token(issuer: LocalIssuer, clock: Clock) -> None:
    """(r, s) and (r, n - s) both verify: for an issuer without ``jti`` the
    replay key must not depend on the signature."""
    verifier = verifier_for(issuer, clock, multiple_audiences=True, jti=False)
    token = issuer.sign(issuer.bitbucket(), kid="ec-1")
    signing_input, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    malleated = r.to_bytes(32, "big") + (n - s).to_bytes(32, "big")
    other = signing_input + "." + base64.urlsafe_b64encode(malleated).rstrip(b"=").decode()
    assert other != token
    assert verifier.verify(other).replay_key == verifier.verify(token).replay_key


def test_jti_false_replay_key_is_a_digest_of_the_whole_token(
    issuer: LocalIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock, multiple_audiences=True, jti=False)
    one = verifier.verify(issuer.sign(issuer.bitbucket()))
    two = verifier.verify(issuer.sign(issuer.bitbucket(stepUuid="{other}")))
    assert one.replay_key != two.replay_key


def test_an_unknown_kid_flood_fetches_at_most_once_a_minute(
    issuer: LocalIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    verifier.verify(issuer.sign(issuer.github()))
    assert issuer.jwks_fetches == 1
    for n in range(200):
        with pytest.raises(Refusal, match="does not publish"):
            verifier.verify(issuer.sign(issuer.github(), kid=f"unknown-{n}", key=OTHER_RSA_KEY))
    assert issuer.jwks_fetches == 1  # the first fetch was under a minute ago
    clock.now += 61
    for n in range(200):
        with pytest.raises(Refusal):
            verifier.verify(issuer.sign(issuer.github(), kid=f"again-{n}", key=OTHER_RSA_KEY))
    assert issuer.jwks_fetches == 2


def test_a_new_key_is_found_by_one_refetch(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    verifier.verify(issuer.sign(issuer.github()))
    issuer.keys["rsa-2"] = OTHER_RSA_KEY  # the issuer rotates its keys
    clock.now += 61
    verifier.verify(issuer.sign(issuer.github(), kid="rsa-2"))
    assert issuer.jwks_fetches == 2


def test_the_last_good_keys_survive_a_key_server_that_is_down(
    issuer: LocalIssuer, clock: Clock
) -> None:
    verifier = verifier_for(issuer, clock)
    verifier.verify(issuer.sign(issuer.github()))
    issuer.down = True
    clock.now += 7200  # stale: every lookup tries to refresh, and fails
    verifier.verify(issuer.sign(issuer.github()))
    with pytest.raises(Refusal) as e:  # an unknown kid: refused, not a 503
        verifier.verify(issuer.sign(issuer.github(), kid="rsa-9", key=OTHER_RSA_KEY))
    assert e.value.code == "invalid-token"
    verifier.verify(issuer.sign(issuer.github(), kid="ec-1"))


def test_an_issuer_down_with_no_keys_is_unavailable(issuer: LocalIssuer, clock: Clock) -> None:
    issuer.down = True
    verifier = verifier_for(issuer, clock)
    for _ in range(3):
        with pytest.raises(IssuerUnavailable) as e:
            verifier.verify(issuer.sign(issuer.github()))
        assert e.value.status == 503
    assert issuer.discovery_fetches == 0  # the server answered 503 before counting
    issuer.down = False
    clock.now += 61
    verifier.verify(issuer.sign(issuer.github()))


def test_a_withdrawn_key_stops_verifying_after_a_refresh(issuer: LocalIssuer, clock: Clock) -> None:
    verifier = verifier_for(issuer, clock)
    verifier.verify(issuer.sign(issuer.github(), kid="ec-1"))
    del issuer.keys["ec-1"]
    clock.now += 3601
    with pytest.raises(Refusal, match="does not publish"):
        verifier.verify(issuer.sign(issuer.github(), kid="ec-1", key=issuer.keys["rsa-1"]))


def test_discovery_naming_another_issuer_gives_no_keys(issuer: LocalIssuer, clock: Clock) -> None:
    keyset = KeySet(issuer.url + "/", clock=clock)  # the document says issuer.url
    with pytest.raises(IssuerUnavailable):
        keyset.get("rsa-1")


def test_parse_jwks_keeps_only_signing_keys_it_can_bind() -> None:
    from oidc_issuer import EC_KEY
    from oidc_issuer import public_jwk
    from oidc_issuer import RSA_KEY

    good_rsa = public_jwk(RSA_KEY, "r")
    good_ec = public_jwk(EC_KEY, "e")
    keys = parse_jwks(
        {
            "keys": [
                good_rsa,
                good_ec,
                {**good_rsa, "kid": "enc", "use": "enc"},
                {**good_rsa, "kid": "ps", "alg": "PS256"},
                {**good_ec, "kid": "p384", "crv": "P-384"},
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                {**good_rsa, "kid": None},
                "garbage",
            ]
        }
    )
    assert {kid: alg for kid, (_, alg) in keys.items()} == {"r": "RS256", "e": "ES256"}
    with pytest.raises(ValueError):
        parse_jwks({"no": "keys"})


@pytest.mark.parametrize(
    "token",
    [None, 5, "", "a.b", "a.b.c", "é.é.é", "x" * 20000, "..", "e30.e30.", b64({"alg": "RS256"})],
)
def test_garbage_is_a_refusal(issuer: LocalIssuer, clock: Clock, token: Any) -> None:
    verifier = verifier_for(issuer, clock)
    with pytest.raises(Refusal):
        verifier.verify(token)


def test_pyjwt_floor() -> None:
    major, minor = (int(x) for x in jwt.__version__.split(".")[:2])
    assert (major, minor) >= (2, 13)
