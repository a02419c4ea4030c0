"""Expiry warnings, as a code host would deliver them: a notification for the
workspace's admins, shown on a page, and an email built from the signal.

``flask access-tokens notify-expiring`` (run from cron) sends the extension's
``token_expiring`` and ``token_expired`` signals; the receivers here turn each
into a stored notification and an :class:`email.message.EmailMessage` handed
to ``app.config["NOTICE_EMAIL_SENDER"]``: a callable taking the message. The
default only logs it; a real host would pass ``smtplib.SMTP(...).send_message``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from flask import abort
from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import render_template
from sqlalchemy import DateTime
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_accesstokens import token_expired
from flask_accesstokens import token_expiring

from .auth import current_user
from .auth import login_required
from .extensions import db
from .extensions import Model
from .models import Membership
from .models import role_in
from .models import utcnow
from .models import Workspace

log = logging.getLogger("example_app.notices")
bp = Blueprint("notices", __name__)
EmailSender = Callable[[EmailMessage], None]


class Notification(Model):
    """One message for a workspace's admins."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    token_id: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_on: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def log_email(message: EmailMessage) -> None:
    """The default sender: logs what would be sent (no mail server needed)."""
    log.info("email to %s: %s", message["To"], message["Subject"])


def admins_of(workspace: str) -> list[str]:
    query = (
        sa.select(Membership)
        .join(Workspace, Membership.workspace_id == Workspace.id)
        .where(Workspace.slug == workspace, Membership.role == "admin")
    )
    return sorted(m.user.username for m in db.session.scalars(query))


def warning_email(token: Any, subject: str, body: str) -> EmailMessage:
    """The email for one warning, addressed to the workspace's admins. The
    host's users have no email column; ``<username>@users.example`` stands
    in for the address a real host would look up."""
    message = EmailMessage()
    message["From"] = current_app.config.get("NOTICE_EMAIL_FROM", "tokens@example.com")
    message["To"] = ", ".join(f"{name}@users.example" for name in admins_of(token.workspace))
    message["Subject"] = subject
    message.set_content(body)
    return message


def deliver(token: Any, subject: str, body: str) -> None:
    db.session.add(
        Notification(workspace=token.workspace, token_id=token.id, subject=subject, body=body)
    )
    db.session.commit()
    sender: EmailSender = current_app.config.get("NOTICE_EMAIL_SENDER") or log_email
    sender(warning_email(token, subject, body))


def on_expiring(sender: Flask, token: Any, days_left: int, **extra: Any) -> None:
    when = token.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    deliver(
        token,
        f"Access token {token.name!r} expires in {days_left} day{'s' if days_left != 1 else ''}",
        f"The {token.type} access token {token.name!r} on {_where(token)} stops working"
        f" at {when}. Create a replacement and update whatever uses it before then.",
    )


def on_expired(sender: Flask, token: Any, **extra: Any) -> None:
    deliver(
        token,
        f"Access token {token.name!r} has expired",
        f"The {token.type} access token {token.name!r} on {_where(token)} no longer works.",
    )


def _where(token: Any) -> str:
    if token.repository:
        return f"repository {token.workspace}/{token.repository}"
    if token.project:
        return f"project {token.project} in {token.workspace}"
    return f"workspace {token.workspace}"


def init_app(app: Flask) -> None:
    token_expiring.connect(on_expiring, app, weak=False)
    token_expired.connect(on_expired, app, weak=False)
    app.register_blueprint(bp)


@bp.get("/<workspace>/workspace/notifications")
@login_required
def notifications(workspace: str) -> str:
    """The workspace's token warnings, for its admins only (members get 404,
    as for every admin page here)."""
    user = current_user()
    if user is None or role_in(user, workspace) != "admin":
        abort(404)
    found = db.session.scalars(
        sa.select(Notification)
        .where(Notification.workspace == workspace)
        .order_by(Notification.id.desc())
        .limit(100)
    ).all()
    return render_template("notifications.html", workspace=workspace, notifications=found)
