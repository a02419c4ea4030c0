"""One-time ids for the admin forms whose answer reveals a secret.

The answer to such a form is the result of a POST: a reload, or back and
forward, sends the form again. Each rendering of the form gets a fresh id,
remembered in the session until it is submitted once; a second submission
finds it used up and creates nothing.

The ids are signed with the app's secret key, so a POST can also tell a used
id from one the server never issued: a script that posts the form without
opening it gets a clear refusal instead of a quiet "already submitted".
The session holds only these random ids, never a secret.
"""

from __future__ import annotations

import secrets
from typing import Literal

from flask import current_app
from flask import session
from itsdangerous import BadSignature
from itsdangerous import URLSafeSerializer

#: Session key of the form ids handed out and not yet submitted.
SESSION_KEY = "_accesstokens_form_ids"
#: How many unsubmitted forms a session may have open at once; opening more
#: forgets the oldest, which then count as already submitted.
KEPT = 10
SALT = "flask-accesstokens.form-id"

Submission = Literal["first", "again", "foreign"]


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key or "", salt=SALT)


def issue() -> str:
    """A fresh one-time id for a form. Templates call it as they render the
    form, so each rendering gets its own."""
    form_id = str(_signer().dumps(secrets.token_urlsafe(16)))
    session[SESSION_KEY] = [*open_ids(), form_id][-KEPT:]
    return form_id


def open_ids() -> list[str]:
    ids = session.get(SESSION_KEY)
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def use(form_id: str) -> Submission:
    """Use up ``form_id``: ``"first"`` when it was open in this session,
    ``"again"`` when this server issued it but it is used up (or belongs to
    another session), ``"foreign"`` when this server never issued it."""
    ids = open_ids()
    if form_id and form_id in ids:
        ids.remove(form_id)
        session[SESSION_KEY] = ids
        return "first"
    try:
        _signer().loads(form_id)
    except BadSignature:
        return "foreign"
    return "again"
