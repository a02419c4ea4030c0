"""Throttling failed authentication per client address.

The throttle answers 429 only to requests that would fail anyway: a valid
token is never refused because of other requests' failures (a shared NAT,
or a proxy without ProxyFix, must not become a denial of service). While a
client is over budget its failures cost no audit row and no log line.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from typing import Any

import pytest
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.pipeline import Pipeline

REDIS_VARIABLE = "ACCESSTOKENS_TEST_REDIS_URL"


def storages() -> list[Any]:
    redis = os.environ.get(REDIS_VARIABLE)
    reason = f"Redis tests need {REDIS_VARIABLE}=redis://127.0.0.1:6379/0 (bash .ci/run starts one)"
    return [
        pytest.param("memory://", id="memory"),
        pytest.param(
            redis or "redis://unset",
            id="redis",
            marks=pytest.mark.skipif(not redis and not os.environ.get("CI"), reason=reason),
        ),
    ]


@pytest.fixture(params=storages())
def limited(request: Any, database_uri: str) -> Any:
    app, db, tokens = make_app(
        database_uri,
        ACCESSTOKENS_RATELIMIT="3/minute",
        ACCESSTOKENS_RATELIMIT_STORAGE_URI=request.param,
        # Every failure is due for the audit log at once, so a skipped write shows.
        ACCESSTOKENS_FAILURE_AUDIT_INTERVAL=timedelta(microseconds=1),
    )
    throttle = Pipeline.of(app).throttle
    assert throttle is not None
    # A fresh key space per test, so runs never see each other's counts.
    throttle.namespace = f"accesstokens-{uuid.uuid4().hex}"
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        yield app, new.secret
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()


def get(
    app: Any, headers: dict[str, str], client: str, path: str = "/repositories/acme/api"
) -> Any:
    return app.test_client().get(path, headers=headers, environ_base={"REMOTE_ADDR": client})


GARBAGE = bearer("bbat_" + "x" * 49)


def test_failures_are_throttled_per_client(limited: Any) -> None:
    app, _ = limited
    for _ in range(3):
        assert get(app, GARBAGE, "10.0.0.1").status_code == 401
    throttled = get(app, GARBAGE, "10.0.0.1")
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json["type"] == "error"
    # Other clients are not affected.
    assert get(app, GARBAGE, "10.0.0.2").status_code == 401


@pytest.mark.parametrize("bad_requests", [3, 5, 50])
def test_a_valid_token_is_never_refused_for_other_requests_failures(
    limited: Any, bad_requests: int
) -> None:
    # One address stands for many people (a NAT, a proxy without ProxyFix).
    app, secret = limited
    for _ in range(bad_requests):
        get(app, GARBAGE, "10.0.0.9")
    assert get(app, GARBAGE, "10.0.0.9").status_code == 429
    assert get(app, bearer(secret), "10.0.0.9").status_code == 200
    assert get(app, bearer(secret), "10.0.0.9", "/repositories/acme/api?x=1").status_code == 200
    # A valid token without the scope or bound elsewhere still gets its 403.
    assert get(app, bearer(secret), "10.0.0.9", "/repositories/acme/web").status_code == 403


def test_revoked_and_unknown_tokens_count_and_are_throttled(limited: Any) -> None:
    app, secret = limited
    service = AccessTokens.service()
    service.revoke(service.search(Resource.of("acme"), exact=False).items[0].id)
    for _ in range(3):
        assert get(app, bearer(secret), "10.0.0.7").status_code == 401
    assert get(app, bearer(secret), "10.0.0.7").status_code == 429


def test_successes_and_anonymous_requests_do_not_count(limited: Any) -> None:
    app, secret = limited
    for _ in range(10):
        assert get(app, bearer(secret), "10.0.0.3").status_code == 200
        assert get(app, {}, "10.0.0.3").status_code == 401
    assert get(app, GARBAGE, "10.0.0.3").status_code == 401


def test_malformed_headers_count_as_failures(limited: Any) -> None:
    app, _ = limited
    for _ in range(3):
        assert get(app, {"Authorization": "Bearer a b"}, "10.0.0.4").status_code == 400
    assert get(app, {"Authorization": "Bearer a b"}, "10.0.0.4").status_code == 429


def test_over_budget_failures_cost_no_writes_and_no_logs(
    limited: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = limited
    for _ in range(3):
        get(app, GARBAGE, "10.0.0.6")
    written = len(AccessTokens.service().events())
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="flask_accesstokens"):
        for _ in range(20):
            assert get(app, GARBAGE, "10.0.0.6").status_code == 429
    assert len(AccessTokens.service().events()) == written
    assert caplog.records == []


def test_unreachable_storage_never_grants_and_never_refuses_a_valid_token(
    database_uri: str,
) -> None:
    pytest.importorskip("redis", reason="needs the redis client: pip install -e '.[ratelimit]'")
    app, db, tokens = make_app(
        database_uri,
        ACCESSTOKENS_RATELIMIT="3/minute",
        ACCESSTOKENS_RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0",
    )
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        assert get(app, bearer(new.secret), "10.0.0.5").status_code == 200
        for _ in range(5):
            assert get(app, GARBAGE, "10.0.0.5").status_code == 401
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()
