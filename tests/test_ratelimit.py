"""Throttling failed authentication per client address (``ratelimit`` extra)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from conftest import bearer
from conftest import make_app

pytest.importorskip("limits", reason="needs the ratelimit extra: pip install -e '.[ratelimit]'")

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
        # A fresh key space per test, so runs never see each other's counts.
        ACCESSTOKENS_RATELIMIT_STORAGE_URI=request.param,
    )
    state = tokens.state(app)
    state.throttle.item.namespace = f"LIMITER-{uuid.uuid4().hex}"  # type: ignore[union-attr]
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        yield app, new.secret
        db.session.remove()
        state.store.dispose()
        db.engine.dispose()


def get(app: Any, headers: dict[str, str], client: str) -> Any:
    return app.test_client().get(
        "/repositories/acme/api", headers=headers, environ_base={"REMOTE_ADDR": client}
    )


def test_failures_are_throttled_per_client(limited: Any) -> None:
    app, secret = limited
    garbage = bearer("bbat_" + "x" * 49)
    for _ in range(3):
        assert get(app, garbage, "10.0.0.1").status_code == 401
    throttled = get(app, garbage, "10.0.0.1")
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json["type"] == "error"
    # While throttled, even a valid token from that client waits...
    assert get(app, bearer(secret), "10.0.0.1").status_code == 429
    # ...but other clients are not affected.
    assert get(app, bearer(secret), "10.0.0.2").status_code == 200
    assert get(app, garbage, "10.0.0.2").status_code == 401


def test_successes_and_anonymous_requests_do_not_count(limited: Any) -> None:
    app, secret = limited
    for _ in range(10):
        assert get(app, bearer(secret), "10.0.0.3").status_code == 200
        assert get(app, {}, "10.0.0.3").status_code == 401
    assert get(app, bearer(secret), "10.0.0.3").status_code == 200


def test_malformed_headers_count_as_failures(limited: Any) -> None:
    app, _ = limited
    for _ in range(3):
        assert get(app, {"Authorization": "Bearer a b"}, "10.0.0.4").status_code == 400
    assert get(app, {"Authorization": "Bearer a b"}, "10.0.0.4").status_code == 429


def test_unreachable_storage_fails_closed(database_uri: str) -> None:
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
        response = get(app, bearer(new.secret), "10.0.0.5")
        assert response.status_code == 503
        db.session.remove()
        tokens.state(app).store.dispose()
        db.engine.dispose()
