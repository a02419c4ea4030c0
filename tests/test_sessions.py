"""The request path never commits, rolls back or stalls the app's own work."""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa
from helpers import bearer
from helpers import make_app

from flask_accesstokens import verify_token_in_request


def test_in_memory_database_keeps_the_apps_pending_work() -> None:
    # sqlite:// shares one connection between the app's session and the
    # lookup: authenticating must not roll back what the app has flushed.
    app, db, tokens = make_app("sqlite://", ACCESSTOKENS_LAST_USED_RESOLUTION=0)
    with app.app_context():
        db.session.execute(sa.text("CREATE TABLE notes (body TEXT)"))
        db.session.commit()
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        with app.test_request_context("/repositories/acme/api", headers=bearer(new.secret)) as ctx:
            ctx.request.view_args = {"workspace": "acme", "repo_slug": "api"}
            db.session.execute(sa.text("INSERT INTO notes VALUES ('kept')"))
            assert verify_token_in_request("repository") is not None
            db.session.commit()
        assert db.session.execute(sa.text("SELECT count(*) FROM notes")).scalar() == 1
        assert tokens.get_token(new.token.id).last_used_at is not None  # type: ignore[union-attr]
        db.session.remove()


def test_recording_use_does_not_wait_on_a_held_write_lock(tmp_path: Any) -> None:
    # Another connection holds SQLite's write lock (an app's open write
    # transaction): recording last use gives up quickly instead of waiting
    # out the driver's 5 s busy timeout, and the request still succeeds.
    uri = f"sqlite:///{tmp_path / 'tokens.sqlite'}"
    app, db, tokens = make_app(uri)
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        holder = sa.create_engine(uri)
        locked, release = threading.Event(), threading.Event()

        def hold() -> None:
            with holder.begin() as conn:
                conn.exec_driver_sql("UPDATE accesstokens_event SET count = count")
                locked.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            assert locked.wait(5)
            started = time.monotonic()
            response = app.test_client().get("/repositories/acme/api", headers=bearer(new.secret))
            elapsed = time.monotonic() - started
        finally:
            release.set()
            thread.join()
            holder.dispose()
        assert response.status_code == 200
        assert elapsed < 2.0
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()
