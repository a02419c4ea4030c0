"""A real OIDC issuer on loopback for the exchange tests: RSA and EC keys,
``/.well-known/openid-configuration`` and a JWKS served over HTTP, and ID
tokens shaped like GitHub Actions', GitLab CI's and Bitbucket Pipelines'.
It counts the key fetches and can be taken down."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

#: Generating RSA keys is slow: one per process is enough.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update(alg="RS256")
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwk.update(alg="ES256")
    jwk.update(kid=kid, use="sig")
    return dict(jwk)


class Issuer:
    """The issuer at ``self.url``. ``keys`` maps kid to private key; the JWKS
    publishes their public halves."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"rsa-1": RSA_KEY, "ec-1": EC_KEY}
        self.down = False
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if issuer.down:
                    self.send_error(503)
                    return
                if self.path.endswith("/.well-known/openid-configuration"):
                    # Also under a path: a second issuer (``/bitbucket``)
                    # on the same server, with the same keys.
                    issuer.discovery_fetches += 1
                    name = issuer.url + self.path.removesuffix("/.well-known/openid-configuration")
                    body = {"issuer": name, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = {"keys": [public_jwk(k, kid) for kid, k in issuer.keys.items()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str = "rsa-1",
        key: Any = None,
        algorithm: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        key = key if key is not None else self.keys[kid]
        if algorithm is None:
            algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})

    def base(self, audience: str, lifetime: int = 300) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.url,
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }

    def github(self, audience: str = "https://tokens.example", **extra: Any) -> dict[str, Any]:
        """Claims as GitHub Actions puts them in its ID tokens."""
        return {
            **self.base(audience),
            "sub": "repo:acme/api:ref:refs/heads/main",
            "ref": "refs/heads/main",
            "sha": secrets.token_hex(20),
            "repository": "acme/api",
            "repository_id": "123456",
            "repository_owner": "acme",
            "repository_owner_id": "987",
            "run_id": "4242",
            "run_attempt": "1",
            "actor": "alice",
            "workflow": "release",
            "workflow_ref": "acme/api/.github/workflows/release.yml@refs/heads/main",
            "job_workflow_ref": "acme/api/.github/workflows/release.yml@refs/heads/main",
            "event_name": "push",
            "ref_type": "branch",
            "environment": "production",
            "runner_environment": "github-hosted",
            **extra,
        }

    def gitlab(self, audience: str = "https://tokens.example", **extra: Any) -> dict[str, Any]:
        """Claims as GitLab CI's ``id_tokens`` carry them."""
        return {
            **self.base(audience),
            "sub": "project_path:acme/api:ref_type:branch:ref:main",
            "namespace_id": "72",
            "namespace_path": "acme",
            "project_id": "20",
            "project_path": "acme/api",
            "user_login": "alice",
            "pipeline_id": "1212",
            "pipeline_source": "push",
            "job_id": "302",
            "ref": "main",
            "ref_type": "branch",
            "ref_protected": "true",
            "environment": "production",
            **extra,
        }

    def bitbucket(self, audiences: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        """Claims as Bitbucket Pipelines' ``oidc: true`` steps carry them:
        several audiences, and no ``jti``."""
        claims = {
            **self.base("unused"),
            "aud": audiences or ["ari:cloud:bitbucket::workspace/abc", "https://tokens.example"],
            "sub": "{repo-uuid}:{step-uuid}",
            "workspaceUuid": "{ws-uuid}",
            "repositoryUuid": "{repo-uuid}",
            "pipelineUuid": "{pipe-uuid}",
            "stepUuid": "{step-uuid}",
            "branchName": "main",
            "deploymentEnvironment": "production",
            **extra,
        }
        del claims["jti"]
        return claims


@contextmanager
def running_issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    try:
        yield issuer
    finally:
        issuer.close()
