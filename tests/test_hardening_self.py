"""``GET self`` answers what a job needs to know about its own token, never
what its owners know about its use (issue 21, item 1): whoever holds a token
may not be its owner."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from helpers import basic
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens.models import utcnow
from flask_accesstokens.serialize import SELF_FIELDS

SELF = "/api/access-tokens/self"
#: The contract's field set; ``resource`` where the record has one.
EXACT = {
    "id",
    "name",
    "type",
    "workspace",
    "project",
    "repository",
    "scopes",
    "granted",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
}
#: What the management API shows and ``self`` must not.
OWNERS_ONLY = (
    "recent_clients",
    "last_used_ip",
    "allowed_ips",
    "created_by",
    "revoked_by",
    "leak_provider",
    "leak_url",
    "canary",
    "state",
    "hint",
    "rotated_at",
)


def allowed_keys(body: dict[str, Any]) -> set[str]:
    return EXACT | ({"resource"} if "resource" in body else set())


@pytest.mark.parametrize(
    "bound",
    [
        {"workspace": "acme", "repository": "api"},
        {"workspace": "acme", "project": "API"},
        {"workspace": "acme"},
    ],
    ids=["repository", "project", "workspace"],
)
@pytest.mark.parametrize("credentials", [bearer, basic], ids=["bearer", "basic"])
def test_self_shows_exactly_the_job_fields(
    client: Any, tokens: AccessTokens, bound: dict[str, str], credentials: Any
) -> None:
    scopes = ["repository"] if "repository" in bound else ["project"]
    if set(bound) == {"workspace"}:
        scopes = ["account"]
    new = tokens.create_token(
        name="CI build",
        scopes=scopes,
        created_by="alice@corp.internal",
        allowed_ips=["10.1.2.0/24", "2001:db8:1:2::/64"],
        expires_at=utcnow() + timedelta(days=3),
        **bound,
    )
    # Other clients use it first, with telling user agents.
    for address, agent in [
        ("10.1.2.3", "ci-runner/1.2 (build-host-7.corp.internal)"),
        ("2001:db8:1:2::9", "deploy-bot/3"),
    ]:
        r = client.get(
            SELF,
            headers={**credentials(new.secret), "User-Agent": agent},
            environ_base={"REMOTE_ADDR": address},
        )
        assert r.status_code == 200
    r = client.get(SELF, headers=credentials(new.secret), environ_base={"REMOTE_ADDR": "10.1.2.4"})
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == allowed_keys(body)
    for field in OWNERS_ONLY:
        assert field not in body
    text = r.get_data(as_text=True)
    for leaked in ("10.1.2.3", "build-host-7", "deploy-bot", "alice@corp", "10.1.2.0/24"):
        assert leaked not in text
    assert body["id"] == new.token.id and body["name"] == "CI build"
    assert body["scopes"] == scopes and set(scopes) <= set(body["granted"])
    assert body["expires_at"] is not None and body["revoked_at"] is None
    assert body["last_used_at"] is not None
    # The owner still sees everything on the management API.
    record = tokens.get_token(new.token.id)
    assert record is not None and record.recent_clients


def test_the_field_list_is_the_contracts() -> None:
    assert set(SELF_FIELDS) == (EXACT - {"granted"}) | {"resource"}


def test_self_includes_the_resource_when_the_record_has_one(
    client: Any, tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generic resource model puts a ``resource`` mapping on the record:
    ``self`` shows it beside the Bitbucket fields."""
    from flask_accesstokens import models

    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    body = client.get(SELF, headers=bearer(new.secret)).get_json()
    if "resource" in body:  # the record already has one
        assert isinstance(body["resource"], dict)
        return
    resource = {"workspace": "acme", "repository": "api"}
    monkeypatch.setattr(models.AccessToken, "resource", resource, raising=False)
    body = client.get(SELF, headers=bearer(new.secret)).get_json()
    assert body["resource"] == resource
    assert set(body) == EXACT | {"resource"}
