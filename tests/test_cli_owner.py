"""The CLI's owner controls: ``--allowed-ip``, recent clients in ``show``,
``notify-expiring`` and ``prune`` forgetting old addresses."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessTokens


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["access-tokens", *args])


def test_create_with_allowed_ips(app: Flask, client: Any) -> None:
    result = run(
        app, "create", "--workspace", "acme", "--repository", "api", "--name", "CI",
        "--scope", "repository", "--allowed-ip", "203.0.113.0/24",
        "--allowed-ip", "2001:db8::1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    made = json.loads(result.output)
    assert made["allowed_ips"] == ["203.0.113.0/24", "2001:db8::1/128"]
    auth = bearer(made["token"])
    ok = client.get(
        "/repositories/acme/api", headers=auth, environ_base={"REMOTE_ADDR": "203.0.113.9"}
    )
    assert ok.status_code == 200
    far = client.get(
        "/repositories/acme/api", headers=auth, environ_base={"REMOTE_ADDR": "192.0.2.1"}
    )
    assert far.status_code == 403

    listing = run(app, "list", "--workspace", "acme", "--repository", "api")
    assert "ALLOWED IPS" in listing.output
    assert "203.0.113.0/24,2001:db8::1/128" in listing.output
    shown = run(app, "show", made["id"])
    assert "allowed_ips:   203.0.113.0/24 2001:db8::1/128" in shown.output
    assert "recent clients:\n  203.0.113.9  " in shown.output


def test_bad_allowed_ip_writes_nothing(app: Flask, tokens: AccessTokens) -> None:
    result = run(
        app, "create", "--workspace", "acme", "--repository", "api", "--name", "CI",
        "--scope", "repository", "--allowed-ip", "10.0.0.1/8",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "allowed_ips: '10.0.0.1/8' has host bits set" in result.output
    assert tokens.list_tokens("acme", repository="api") == []


def test_show_anywhere_and_no_clients(app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    shown = run(app, "show", new.token.id)
    assert "allowed_ips:   anywhere" in shown.output
    assert "recent clients: none" in shown.output


def test_prune_forgets_old_addresses(
    app: Flask, client: Any, tokens: AccessTokens, db: SQLAlchemy
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    client.get(
        "/repositories/acme/api", headers=bearer(new.secret),
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )  # fmt: skip
    result = run(app, "prune", "--older-than-days", "30")
    assert result.exit_code == 0, result.output
    assert "Forgot client addresses last seen more than 90 days ago." in result.output
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and len(record.recent_clients) == 1
    service = AccessTokens.service()
    assert service.prune_clients(timedelta(microseconds=1)) == 2  # the client and last-used address
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.recent_clients == [] and record.last_used_ip is None
