"""Expiry warnings in the example app: a notifications page for workspace
admins, and an email per warning from the signal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage

from flask import Flask
from flask.testing import FlaskClient

from example_app.extensions import tokens
from flask_accesstokens.models import utcnow

Login = Callable[[str], None]


def test_warnings_reach_admins_page_and_email(
    host_app: Flask, host_client: FlaskClient, login: Login
) -> None:
    sent: list[EmailMessage] = []
    host_app.config["NOTICE_EMAIL_SENDER"] = sent.append
    with host_app.app_context():
        now = utcnow()
        tokens.create_token(
            name="deploy", workspace="acme", repository="api", scopes=["repository"],
            expires_at=now + timedelta(days=5),
        )  # fmt: skip
        assert tokens.notify_expiring(now) == 1
        assert tokens.notify_expiring(now) == 0
    [email] = sent
    assert email["Subject"] == "Access token 'deploy' expires in 7 days"
    assert email["To"] == "alice@users.example"
    assert "repository acme/api" in email.get_content()

    login("alice")
    page = host_client.get("/acme/workspace/notifications")
    assert page.status_code == 200
    assert "Access token &#39;deploy&#39; expires in 7 days" in page.text
    assert "/acme/workspace/notifications" in host_client.get("/acme/").text
    assert "No notifications." in host_client.get("/hobby/workspace/notifications").text


def test_members_and_strangers_do_not_see_them(host_client: FlaskClient, login: Login) -> None:
    login("bob")  # a member of acme, not an admin
    assert host_client.get("/acme/workspace/notifications").status_code == 404
    assert host_client.get("/hobby/workspace/notifications").status_code == 404
    assert "/acme/workspace/notifications" not in host_client.get("/acme/").text


def test_default_sender_logs(host_app: Flask, caplog: object) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    with caplog.at_level(logging.INFO, logger="example_app.notices"):
        with host_app.app_context():
            now = utcnow()
            tokens.create_token(
                name="old", workspace="hobby", repository="notes", scopes=["repository"],
                expires_at=now + timedelta(hours=1),
            )  # fmt: skip
            assert tokens.notify_expiring(now + timedelta(days=1)) == 1
    assert "email to alice@users.example: Access token 'old' has expired" in caplog.text
