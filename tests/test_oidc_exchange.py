"""The OIDC exchange over HTTP and trust policies on every surface: a CI job
trades an ID token from a real loopback issuer for a short-lived token."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from oidc_issuer import Issuer as LocalIssuer
from oidc_issuer import OTHER_RSA_KEY
from oidc_issuer import running_issuer

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import TokenValidationError
from flask_accesstokens.models import AccessToken
from flask_accesstokens.models import TokenEvent
from flask_accesstokens.trustmodels import ExchangedIDToken

AUDIENCE = "https://tokens.example"
EXCHANGE = "/api/access-tokens/oidc/exchange"
POLICIES = "/api/repositories/acme/api/trust-policies"
ALICE = {"X-Test-User": "alice"}
GITHUB_CLAIMS = {"repository_id": "123456", "ref": "refs/heads/main"}


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with running_issuer() as issuer:
        yield issuer


def oidc_app(
    database_uri: str, issuer: LocalIssuer, **config: Any
) -> tuple[Flask, SQLAlchemy, AccessTokens]:
    app, db, tokens = make_app(
        database_uri,
        ACCESSTOKENS_OIDC_ISSUERS={
            "github": {"issuer": issuer.url, "audience": AUDIENCE},
            "bitbucket": {
                "issuer": issuer.url + "/bitbucket",
                "audience": AUDIENCE,
                "multiple_audiences": True,
                "jti": False,
            },
        },
        ACCESSTOKENS_OIDC_EXCHANGE_LIMIT=config.pop("limit", "100000/minute"),
        ACCESSTOKENS_ADMIN_URL_PREFIX="/settings",
        WTF_CSRF_ENABLED=False,
        **config,
    )

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = request.headers.get("X-Test-User")
        return user if user == "alice" and resource.workspace == "acme" else None

    return app, db, tokens


@pytest.fixture
def parts(
    database_uri: str, issuer: LocalIssuer
) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    parts = oidc_app(database_uri, issuer)
    with parts[0].app_context():
        yield parts
        AccessTokens.dispose_connections()
        parts[1].session.remove()
        parts[1].engine.dispose()


@pytest.fixture
def app(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> Flask:
    return parts[0]


@pytest.fixture
def tokens(parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> AccessTokens:
    return parts[2]


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def policy(tokens: AccessTokens) -> Any:
    return tokens.create_trust_policy(
        resource={"workspace": "acme", "repository": "api"},
        issuer="github",
        claims=GITHUB_CLAIMS,
        scopes=["repository:write", "pullrequest"],
        lifetime=timedelta(minutes=15),
        created_by="alice",
    )


def exchange(client: Any, id_token: Any, **body: Any) -> Any:
    return client.post(EXCHANGE, json={"token": id_token, **body})


def count(model: Any) -> int:
    from flask_accesstokens.state import app_state

    return int(app_state().db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


# -- the exchange -----------------------------------------------------------------------


def test_github_job_gets_a_short_lived_bound_token(
    client: Any, issuer: LocalIssuer, policy: Any, tokens: AccessTokens
) -> None:
    before = time.time()
    answer = exchange(client, issuer.sign(issuer.github()))
    assert answer.status_code == 201, answer.json
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json
    assert body["token"].startswith("bbat")
    assert body["repository"] == "api" and body["type"] == "repository"
    assert body["scopes"] == ["repository:write", "pullrequest"]
    assert body["policy_id"] == policy.id
    assert body["created_by"] == "oidc:github:repo:acme/api:ref:refs/heads/main"
    assert body["canary"] is False
    record = tokens.get_token(body["id"])
    assert record is not None and record.expires_at is not None
    lifetime = record.expires_at.timestamp() - before
    assert 14 * 60 < lifetime <= 15 * 60 + 5

    # An ordinary token: it works where it is bound, and nowhere else.
    assert client.get("/repositories/acme/api", headers=bearer(body["token"])).status_code == 200
    assert client.get("/repositories/acme/lib", headers=bearer(body["token"])).status_code == 403

    # The audit row keeps the matched claims and the run.
    (created,) = [e for e in tokens.audit_events(body["id"]) if e.action == "created"]
    detail = json.loads(created.detail)
    assert detail["policy"] == policy.id and detail["oidc"] == "github"
    assert detail["claims"]["repository_id"] == "123456"
    assert detail["claims"]["ref"] == "refs/heads/main"
    assert detail["claims"]["run_id"] == "4242" and "sha" in detail["claims"]


def test_the_job_ends_its_token_and_cannot_rotate_it(
    client: Any, issuer: LocalIssuer, policy: Any
) -> None:
    secret = exchange(client, issuer.sign(issuer.github())).json["token"]
    token_id = client.get("/api/access-tokens/self", headers=bearer(secret)).json["id"]
    rotate = client.post(
        f"/api/repositories/acme/api/access-tokens/{token_id}/rotate", json={}, headers=ALICE
    )
    assert rotate.status_code == 409
    assert client.delete("/api/access-tokens/self", headers=bearer(secret)).status_code == 204
    assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 401


def test_a_long_sub_is_cut_to_fit_and_the_token_can_still_end_itself(
    client: Any, issuer: LocalIssuer, policy: Any
) -> None:
    answer = exchange(client, issuer.sign(issuer.github(sub="repo:" + "x" * 600 + "\n")))
    assert answer.status_code == 201
    body = answer.json
    assert len(body["created_by"]) == 255 and body["created_by"].startswith("oidc:github:repo:x")
    assert body["name"].isprintable() and len(body["name"]) <= 255
    assert (
        client.delete("/api/access-tokens/self", headers=bearer(body["token"])).status_code == 204
    )


def test_a_subset_of_scopes_may_be_asked_for(client: Any, issuer: LocalIssuer, policy: Any) -> None:
    answer = exchange(client, issuer.sign(issuer.github()), scopes=["repository"])
    assert answer.status_code == 201
    assert answer.json["scopes"] == ["repository"]  # implied by repository:write
    for scopes in (["repository:admin"], [], ["nope"], "repository"):
        refused = exchange(client, issuer.sign(issuer.github()), scopes=scopes)
        assert refused.status_code == 400
        assert refused.json["error"]["code"] == "invalid-scopes"


def test_a_replayed_id_token_is_refused(client: Any, issuer: LocalIssuer, policy: Any) -> None:
    id_token = issuer.sign(issuer.github())
    assert exchange(client, id_token).status_code == 201
    again = exchange(client, id_token)
    assert again.status_code == 401
    assert again.json["error"]["code"] == "reused-token"
    # A token with the same jti, signed again, is the same token.
    claims = issuer.github()
    exchange(client, issuer.sign(claims))
    assert exchange(client, issuer.sign(claims, kid="ec-1")).json["error"]["code"] == (
        "reused-token"
    )


def test_bitbucket_tokens_without_jti_are_recognised_whole(
    client: Any, issuer: LocalIssuer, tokens: AccessTokens
) -> None:
    tokens.create_trust_policy(
        resource={"workspace": "acme", "repository": "api"},
        issuer="bitbucket",
        claims={"repositoryUuid": "{repo-uuid}", "deploymentEnvironment": "production"},
        scopes=["pipeline"],
    )
    id_token = issuer.sign(issuer.bitbucket(iss=issuer.url + "/bitbucket"))
    answer = exchange(client, id_token)
    assert answer.status_code == 201, answer.json
    assert answer.json["created_by"] == "oidc:bitbucket:{repo-uuid}:{step-uuid}"
    assert exchange(client, id_token).json["error"]["code"] == "reused-token"
    # Another step's token (another digest) is not a replay.
    other = issuer.sign(issuer.bitbucket(iss=issuer.url + "/bitbucket", stepUuid="{2}"))
    assert exchange(client, other).status_code == 201


def test_expired_replay_entries_are_pruned(
    client: Any, issuer: LocalIssuer, policy: Any, app: Flask
) -> None:
    from flask_accesstokens.models import utcnow
    from flask_accesstokens.state import app_state

    session = app_state().db.session
    session.add(ExchangedIDToken(key="0" * 64, expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert exchange(client, issuer.sign(issuer.github())).status_code == 201
    assert session.get(ExchangedIDToken, "0" * 64) is None
    assert count(ExchangedIDToken) == 1


@pytest.mark.parametrize(
    ("claims", "code", "status"),
    [
        ({"repository_id": "999"}, "no-matching-policy", 400),  # another repository
        ({"ref": "refs/heads/evil"}, "no-matching-policy", 400),
        ({"repository_id": 123456}, "no-matching-policy", 400),  # a number is not the string
        ({"aud": "https://other.example"}, "invalid-token", 401),
        ({"aud": [AUDIENCE, "https://other.example"]}, "invalid-token", 401),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "invalid-token", 401),
        ({"nbf": int(time.time()) + 3600}, "invalid-token", 401),
    ],
)
def test_refusals_say_why_and_mint_nothing(
    client: Any,
    issuer: LocalIssuer,
    policy: Any,
    claims: dict[str, Any],
    code: str,
    status: int,
) -> None:
    answer = exchange(client, issuer.sign(issuer.github(**claims)))
    assert answer.status_code == status
    assert answer.json["error"]["code"] == code
    assert "123456" not in answer.text and "refs/heads/main" not in answer.text
    assert count(AccessToken) == 0


def test_attack_tokens_mint_nothing(client: Any, issuer: LocalIssuer, policy: Any) -> None:
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    none = b64({"alg": "none", "kid": "rsa-1"}) + "." + b64(issuer.github()) + "."
    forged = issuer.sign(issuer.github(), key=OTHER_RSA_KEY)
    for bad in (none, forged, "garbage", None, 7, ["a"]):
        answer = exchange(client, bad)
        assert answer.status_code == 401
        assert answer.json["error"]["code"] == "invalid-token"
    for n in range(50):
        exchange(client, issuer.sign(issuer.github(), kid=f"flood-{n}", key=OTHER_RSA_KEY))
    assert issuer.jwks_fetches == 1
    assert count(AccessToken) == 0


def test_an_unreachable_issuer_with_no_keys_is_503(
    client: Any, issuer: LocalIssuer, policy: Any
) -> None:
    issuer.down = True
    answer = exchange(client, issuer.sign(issuer.github()))
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "issuer-unavailable"
    assert "Retry-After" in answer.headers


def test_the_body_is_checked_before_anything(client: Any, issuer: LocalIssuer) -> None:
    assert client.post(EXCHANGE, data="token=x").status_code == 415
    assert client.post(EXCHANGE, data="x" * 70000, content_type="application/json").status_code == (
        413
    )
    for body in ("[]", "{", '{"token": "x", "other": 1}', '"x"', "null"):
        answer = client.post(EXCHANGE, data=body, content_type="application/json")
        assert answer.status_code == 400
        assert answer.json["error"]["code"] == "invalid-request"


def test_the_exchange_is_throttled_per_client(database_uri: str, issuer: LocalIssuer) -> None:
    app, db, _ = oidc_app(database_uri, issuer, limit="3/minute")
    with app.app_context():
        client = app.test_client()
        statuses = [exchange(client, "x").status_code for _ in range(5)]
        assert statuses[:3] == [401, 401, 401]
        assert statuses[3:] == [429, 429]
        other = client.post(EXCHANGE, json={"token": "x"}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
        assert other.status_code == 401
        answer = exchange(client, "x")
        assert answer.json["error"]["code"] == "throttled" and "Retry-After" in answer.headers
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_a_policy_that_is_gone_mints_nothing_and_its_tokens_die(
    client: Any, issuer: LocalIssuer, policy: Any, tokens: AccessTokens
) -> None:
    secret = exchange(client, issuer.sign(issuer.github())).json["token"]
    assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 200
    assert tokens.delete_trust_policy(policy.id, deleted_by="alice") is True
    assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 401
    answer = exchange(client, issuer.sign(issuer.github()))
    assert answer.json["error"]["code"] == "no-matching-policy"
    assert tokens.delete_trust_policy(policy.id) is False


def test_the_most_specific_policy_wins(
    client: Any, issuer: LocalIssuer, policy: Any, tokens: AccessTokens
) -> None:
    tokens.create_trust_policy(
        resource={"workspace": "acme", "repository": "api"},
        issuer="github",
        claims={**GITHUB_CLAIMS, "environment": "production"},
        scopes=["repository"],
    )
    assert exchange(client, issuer.sign(issuer.github())).json["scopes"] == ["repository"]
    staging = exchange(client, issuer.sign(issuer.github(environment="staging")))
    assert staging.json["scopes"] == ["repository:write", "pullrequest"]


# -- trust policies in Python ----------------------------------------------------------


def test_policy_validation(tokens: AccessTokens) -> None:
    good: dict[str, Any] = {
        "resource": {"workspace": "acme", "repository": "api"},
        "issuer": "github",
        "claims": GITHUB_CLAIMS,
        "scopes": ["repository"],
    }
    bad = [
        ({"claims": {}}, "claims"),
        ({"claims": {"aud": "x"}}, "claims"),
        ({"claims": {"ref": 1.5}}, "claims"),
        ({"claims": {"ref": ["a"]}}, "claims"),
        ({"issuer": "gitlab"}, "issuer"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["project"]}, "scopes"),  # a repository token cannot hold it
        ({"lifetime": timedelta(hours=1, seconds=1)}, "lifetime"),
        ({"lifetime": timedelta(0)}, "lifetime"),
        ({"resource": {"workspace": "acme", "project": "API", "repository": "api"}}, "project"),
        ({"resource": {"workspace": "a b"}}, "workspace"),
        ({"resource": {"org": "x"}}, "resource"),
    ]
    for change, field in bad:
        with pytest.raises(TokenValidationError) as e:
            tokens.create_trust_policy(**{**good, **change})
        assert e.value.field == field, change
    assert tokens.list_trust_policies({"workspace": "acme", "repository": "api"}) == []
    made = tokens.create_trust_policy(**good, lifetime=timedelta(hours=1))
    assert made.lifetime == timedelta(hours=1)
    assert [p.id for p in tokens.list_trust_policies(Resource.of("acme", None, "api"))] == [made.id]
    assert tokens.list_trust_policies({"workspace": "acme"}) == []


def test_policies_are_audited(tokens: AccessTokens, policy: Any) -> None:
    tokens.delete_trust_policy(policy.id, deleted_by="bob")
    from flask_accesstokens.state import app_state

    events = (
        app_state()
        .db.session.scalars(
            sa.select(TokenEvent).where(TokenEvent.action.like("policy%")).order_by(TokenEvent.id)
        )
        .all()
    )
    assert [(e.action, e.actor) for e in events] == [
        ("policy added", "alice"),
        ("policy removed", "bob"),
    ]
    assert json.loads(events[0].detail)["claims"] == GITHUB_CLAIMS


def test_init_app_checks_the_issuers() -> None:
    from flask_accesstokens.config import load

    for value in (
        [],
        {"github": {"issuer": "https://x"}},
        {"github": {"issuer": "ftp://x", "audience": "a"}},
        {"github": {"issuer": "https://x", "audience": ""}},
        {"git hub": {"issuer": "https://x", "audience": "a"}},
        {"github": {"issuer": "https://x", "audience": "a", "jti": "no"}},
        {"github": {"issuer": "https://x", "audience": "a", "extra": 1}},
        {
            "a": {"issuer": "https://x", "audience": "a"},
            "b": {"issuer": "https://x", "audience": "b"},
        },
    ):
        with pytest.raises(ValueError, match="ACCESSTOKENS_OIDC_ISSUERS"):
            load({"ACCESSTOKENS_OIDC_ISSUERS": value})


# -- the JSON API ------------------------------------------------------------------------


def test_policies_over_the_json_api(client: Any, issuer: LocalIssuer) -> None:
    body = {"issuer": "github", "claims": GITHUB_CLAIMS, "scopes": ["repository"], "lifetime": 600}
    assert client.post(POLICIES, json=body).status_code == 403  # nobody signed in
    created = client.post(POLICIES, json=body, headers=ALICE)
    assert created.status_code == 201
    policy = created.json
    assert policy["claims"] == GITHUB_CLAIMS and policy["lifetime"] == 600
    assert policy["created_by"] == "alice"
    assert created.headers["Location"].endswith(f"{POLICIES}/{policy['id']}")
    listed = client.get(POLICIES, headers=ALICE).json
    assert [p["id"] for p in listed["values"]] == [policy["id"]]
    assert client.get(f"{POLICIES}/{policy['id']}", headers=ALICE).json == policy
    other = f"/api/repositories/acme/lib/trust-policies/{policy['id']}"
    assert client.get(other, headers=ALICE).status_code == 404
    assert client.delete(other, headers=ALICE).status_code == 404

    secret = exchange(client, issuer.sign(issuer.github())).json["token"]
    # A token cannot manage policies, not even its own policy.
    assert client.get(POLICIES, headers=bearer(secret)).status_code == 403
    assert client.delete(f"{POLICIES}/{policy['id']}", headers=bearer(secret)).status_code == 403

    assert client.delete(f"{POLICIES}/{policy['id']}", headers=ALICE).status_code == 204
    assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 401
    assert client.get(f"{POLICIES}/{policy['id']}", headers=ALICE).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"issuer": "github", "claims": {}, "scopes": ["repository"]}, "claims"),
        ({"issuer": "github", "claims": GITHUB_CLAIMS, "scopes": ["x"]}, "scopes"),
        (
            {
                "issuer": "github",
                "claims": GITHUB_CLAIMS,
                "scopes": ["repository"],
                "lifetime": 3601,
            },
            "lifetime",
        ),
        ({"issuer": 1, "claims": GITHUB_CLAIMS, "scopes": ["repository"]}, "issuer"),
        ({"issuer": "github", "claims": GITHUB_CLAIMS, "scopes": ["repository"], "x": 1}, "x"),
    ],
)
def test_bad_policies_over_the_json_api(client: Any, body: dict[str, Any], field: str) -> None:
    answer = client.post(POLICIES, json=body, headers=ALICE)
    assert answer.status_code == 400
    assert field in answer.json["error"]["fields"]
    assert client.get(POLICIES, headers=ALICE).json["values"] == []


# -- the admin pages and the CLI -------------------------------------------------------------


def test_policies_on_the_admin_pages(
    client: Any, issuer: LocalIssuer, tokens: AccessTokens
) -> None:
    page = "/settings/repositories/acme/api/access-tokens/trust-policies"
    assert (
        "trust-policies"
        in client.get("/settings/repositories/acme/api/access-tokens", headers=ALICE).text
    )
    assert client.get(page).status_code == 403
    assert "No trust policies yet" in client.get(page, headers=ALICE).text
    form = {
        "issuer": "github",
        "claims": "repository_id=123456\nref=refs/heads/main\n",
        "scopes": ["repository"],
        "lifetime": "10",
    }
    added = client.post(page, data=form, headers=ALICE)
    assert added.status_code == 303
    shown = client.get(page, headers=ALICE)
    assert "refs/heads/main" in shown.text
    (policy,) = tokens.list_trust_policies({"workspace": "acme", "repository": "api"})
    assert policy.claims == GITHUB_CLAIMS and policy.lifetime == timedelta(minutes=10)
    assert client.post(page, data={**form, "claims": ""}, headers=ALICE).status_code == 400
    assert client.post(page, data={**form, "lifetime": "61"}, headers=ALICE).status_code == 400

    secret = exchange(client, issuer.sign(issuer.github())).json["token"]
    listing = client.get("/settings/repositories/acme/api/access-tokens", headers=ALICE).text
    assert "CI job (OIDC exchange)" in listing and "oidc:github:" in listing
    delete = f"{page}/{policy.id}/delete"
    assert client.post(delete, headers=bearer(secret)).status_code == 403
    assert client.post(delete, headers=ALICE).status_code == 303
    assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 401


def test_policies_from_the_cli(app: Flask, tokens: AccessTokens) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["access-tokens", "trust-policies", "create", "--workspace", "acme"]
        + ["--repository", "api", "--issuer", "github", "--claim", "repository_id=123456"]
        + ["--claim", "ref=refs/heads/main", "--scope", "repository", "--lifetime", "5"]
    )
    assert result.exit_code == 0, result.output
    policy = json.loads(result.output)
    assert policy["claims"] == GITHUB_CLAIMS and policy["lifetime"] == 300
    assert policy["created_by"] == "cli"
    listed = runner.invoke(
        args=[
            "access-tokens",
            "trust-policies",
            "list",
            "--workspace",
            "acme",
            "--repository",
            "api",
        ]
    )
    assert [p["id"] for p in json.loads(listed.output)] == [policy["id"]]
    bad = runner.invoke(
        args=["access-tokens", "trust-policies", "create", "--workspace", "acme"]
        + ["--issuer", "github", "--claim", "x=1", "--scope", "repository", "--lifetime", "61"]
    )
    assert bad.exit_code != 0
    assert (
        runner.invoke(args=["access-tokens", "trust-policies", "delete", policy["id"]]).exit_code
        == 0
    )
    again = runner.invoke(args=["access-tokens", "trust-policies", "delete", policy["id"]])
    assert again.exit_code != 0 and "No trust policy" in again.output


def test_the_same_id_token_at_once_in_two_workers_mints_one_token(issuer: LocalIssuer) -> None:
    """Two apps on one PostgreSQL database (two workers) race the same ID
    token: the unique key lets exactly one mint. (SQLite serialises its
    writers, so there is no race to run there.)"""
    import threading

    from services import fresh_schema
    from services import require_postgresql

    with fresh_schema(require_postgresql()) as url:
        workers = [oidc_app(url, issuer) for _ in range(2)]
        with workers[0][0].app_context():
            workers[0][2].create_trust_policy(
                resource={"workspace": "acme", "repository": "api"},
                issuer="github",
                claims=GITHUB_CLAIMS,
                scopes=["repository"],
            )
        for _ in range(5):
            id_token = issuer.sign(issuer.github())
            barrier = threading.Barrier(len(workers))
            statuses: list[int] = []

            def run(
                app: Flask,
                id_token: str = id_token,
                barrier: Any = barrier,
                statuses: list[int] = statuses,
            ) -> None:
                with app.app_context():
                    client = app.test_client()
                    barrier.wait()
                    statuses.append(exchange(client, id_token).status_code)

            threads = [threading.Thread(target=run, args=(w[0],)) for w in workers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert sorted(statuses) == [201, 401]
        for app, db, _ in workers:
            with app.app_context():
                db.session.remove()
                AccessTokens.dispose_connections()
                db.engine.dispose()
