"""A writer process for ``test_sqlitechange``'s stress test::

    python sqlitechange_writer.py library|sql DATABASE_URL SECONDS TOKEN_ID...

Revokes each token in turn, through the library (``revoke_token``) or with
plain SQL outside it, at random moments over about SECONDS, committing
unrelated noise in between, and prints each token id only once its
revocation has committed.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from datetime import datetime
from datetime import timezone


def main(kind: str, url: str, seconds: float, ids: list[str]) -> None:
    path = url.removeprefix("sqlite:///")
    raw = sqlite3.connect(path, isolation_level=None, timeout=30)
    raw.execute("CREATE TABLE IF NOT EXISTS noise_" + kind + " (n INTEGER)")
    pause = seconds / max(len(ids), 1)
    if kind == "library":
        from helpers import make_app

        app, db, tokens = make_app(url)
        ctx = app.app_context()
        ctx.push()

        def revoke(token_id: str) -> None:
            assert tokens.revoke_token(token_id) is not None

    else:

        def revoke(token_id: str) -> None:
            now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
            cur = raw.execute(
                "UPDATE accesstokens_token SET revoked_at = ? WHERE id = ?", (now, token_id)
            )
            assert cur.rowcount == 1

    for token_id in ids:
        deadline = time.monotonic() + random.uniform(0, 2 * pause)
        while time.monotonic() < deadline:  # noise: commits that revoke nothing
            raw.execute(f"INSERT INTO noise_{kind} VALUES (1)")
            time.sleep(random.uniform(0, pause / 10))
        revoke(token_id)
        print(token_id, flush=True)
    if kind == "library":
        db.engine.dispose()
        ctx.pop()
    raw.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:])
