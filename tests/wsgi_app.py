"""The test app as gunicorn loads it, for the multi-process tests::

    gunicorn --chdir tests 'wsgi_app:create_app()'

The database URL and ``last_used_at`` resolution come from the environment,
since gunicorn builds the app in each worker. The tables must already exist:
four workers racing ``create_all`` would collide.
"""

from __future__ import annotations

import os

from flask import Flask
from helpers import make_app

DATABASE_VARIABLE = "ACCESSTOKENS_TEST_WSGI_DATABASE_URL"
RESOLUTION_VARIABLE = "ACCESSTOKENS_TEST_WSGI_LAST_USED_RESOLUTION"
#: Set (to anything) behind a pooler in transaction mode: psycopg must not
#: prepare statements on a server session it does not keep.
NO_PREPARE_VARIABLE = "ACCESSTOKENS_TEST_WSGI_NO_PREPARE"
#: A hot standby's URL, for ``ACCESSTOKENS_READ_DATABASE_URI``.
READ_VARIABLE = "ACCESSTOKENS_TEST_WSGI_READ_DATABASE_URL"


def create_app() -> Flask:
    app, _, _ = make_app(
        os.environ[DATABASE_VARIABLE],
        ACCESSTOKENS_LAST_USED_RESOLUTION=float(os.environ.get(RESOLUTION_VARIABLE, "60")),
        SQLALCHEMY_ENGINE_OPTIONS=(
            {"connect_args": {"prepare_threshold": None}}
            if os.environ.get(NO_PREPARE_VARIABLE)
            else {}
        ),
        ACCESSTOKENS_READ_DATABASE_URI=os.environ.get(READ_VARIABLE) or None,
    )
    return app
