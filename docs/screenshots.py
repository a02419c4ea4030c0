"""Screenshots of the example app's pages for the docs, at desktop and phone
widths, in headless Chromium through Playwright.

    .venv/bin/python docs/screenshots.py        # writes docs/_static/example/*.png

Uses Debian's Chromium at /usr/bin/chromium (never a downloaded browser) and a
seeded example app on a loopback port of its own. ``capture`` also measures
each page (overflow, headings, what is visible), so the browser test asserts
on the very pages the docs show.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from example_app import create_app  # noqa: E402
from example_app.extensions import db  # noqa: E402
from example_app.extensions import tokens  # noqa: E402
from example_app.seed import seed_demo  # noqa: E402
from flask_accesstokens import AccessTokens  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "docs" / "_static" / "example"
WIDTHS = {"desktop": 1280, "phone": 390}
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
REPO_TOKENS = "/admin/repositories/acme/api/access-tokens"

#: name -> path; "reveal" is the answer to submitting the create form.
PAGES = {
    "login": "/login",
    "home": "/",
    "repository": "/acme/api",
    "settings": "/acme/api/admin",
    "tokens": REPO_TOKENS,
    "new-token": f"{REPO_TOKENS}/new",
    "reveal": f"{REPO_TOKENS}/new",
    "resubmitted": f"{REPO_TOKENS}?notice=resubmitted",
    "overview": "/admin/workspaces/acme/access-tokens/all",
    # Reached from the token list's "Usage" link of the release job.
    "usage": REPO_TOKENS,
    "notifications": "/acme/workspace/notifications",
}

MEASURE = """() => {
  const style = (el) => el && getComputedStyle(el);
  const box = (el) => el && el.getBoundingClientRect();
  const revokedActions = document.querySelector(".accesstokens-row-revoked .accesstokens-actions");
  const copied = [...document.querySelectorAll("a")]
    .find(a => a.textContent.includes("I have copied"));
  const notice = document.getElementById("form-resubmitted");
  return {
    viewport: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    h1: document.querySelectorAll("h1").length,
    iframes: document.querySelectorAll("iframe").length,
    hasViewportMeta: !!document.querySelector('meta[name=viewport]'),
    revokedActionsDisplay: revokedActions ? style(revokedActions).display : null,
    copiedRight: copied ? box(copied).right : null,
    copiedVisible: copied ? box(copied).height > 0 : null,
    noticeBackground: notice ? style(notice).backgroundColor : null,
    expiringSoon: document.querySelectorAll(".accesstokens-expiring").length,
    recentClients: document.querySelectorAll(".accesstokens-clients").length,
    allowedIps: document.querySelectorAll(".accesstokens-allowed-ips").length,
    notifications: document.querySelectorAll(".notifications li").length,
    // Where each token row's visible cells end: one border line, full width.
    rowRights: [...document.querySelectorAll(".accesstokens-table tbody tr")].map(tr =>
      Math.round(Math.max(...[...tr.cells]
        .filter(td => style(td).display !== "none")
        .map(td => box(td).right)))),
    // The bottom edge of every control in the filter row: one baseline.
    filterBottoms: [...document.querySelectorAll(
      ".accesstokens-filters select, .accesstokens-filters input[type=number]," +
      " .accesstokens-filters label:only-child, .accesstokens-filters button")]
      .map(el => Math.round(box(el).bottom)),
    filterTops: [...document.querySelectorAll(
      ".accesstokens-filters select, .accesstokens-filters input[type=number]," +
      " .accesstokens-filters label:only-child, .accesstokens-filters button")]
      .map(el => Math.round(box(el).top)),
    backLinks: [...document.querySelectorAll("main a")]
      .filter(a => a.textContent.trim().startsWith("←")).length,
    neverNeeded: (document.getElementById("never-needed") || {}).textContent || null,
  };
}"""


def seeded_app(folder: Path) -> Any:
    """The example app with the demo data, one live and one revoked token."""
    app = create_app(
        {
            "SECRET_KEY": "screenshots",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'example.sqlite'}",
            "GIT_ROOT": str(folder / "git"),
            "EXAMPLE_DEMO": True,  # the sign-in page shows the demo credentials
        }
    )
    with app.app_context():
        seed_demo()
        tokens.create_token(
            name="Deploy bot",
            workspace="acme",
            repository="api",
            scopes=["repository"],
            created_by="alice",
        )
        old = tokens.create_token(
            name="Old CI",
            workspace="acme",
            repository="api",
            scopes=["repository:write", "pullrequest"],
            created_by="alice",
        )
        tokens.revoke_token(old.token.id, revoked_by="alice")
        # The workspace overview shows every kind of token.
        tokens.create_token(
            name="Release bot",
            workspace="acme",
            project="API",
            scopes=["project", "pullrequest:write"],
            created_by="alice",
        )
        tokens.create_token(
            name="Audit",
            workspace="acme",
            scopes=["account", "repository"],
            created_by="alice",
        )
        # The owner controls: an allow list, recent clients, an expiry warning.
        now = datetime.now(timezone.utc)
        release = tokens.create_token(
            name="Release job",
            workspace="acme",
            repository="api",
            scopes=["repository:write", "pipeline"],
            created_by="alice",
            expires_at=now + timedelta(days=5),
            allowed_ips=["203.0.113.0/24", "2001:db8::/32"],
        )
        client = app.test_client()
        for address, agent in (
            ("203.0.113.10", "git/2.45.2"),
            ("2001:db8::4", "curl/8.5.0"),
        ):
            client.get(
                "/2.0/repositories/acme/api",
                headers={"Authorization": f"Bearer {release.secret}"},
                environ_base={"REMOTE_ADDR": address, "HTTP_USER_AGENT": agent},
            )
        tokens.notify_expiring(now)
    return app


@contextmanager
def serving(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def capture(browser: Any, base: str, out: Path) -> dict[str, dict[str, Any]]:
    """Screenshot every page at every width into ``out``; their measurements,
    keyed ``<page>-<width name>``."""
    out.mkdir(parents=True, exist_ok=True)
    facts: dict[str, dict[str, Any]] = {}
    for width_name, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 800})
        context.set_default_timeout(15_000)
        page = context.new_page()
        try:
            for name, path in PAGES.items():
                if name == "home":
                    page.fill("input[name=username]", "alice")
                    page.fill("input[name=password]", "demo")
                    page.click("button[type=submit]:has-text('Sign in')")
                    page.wait_for_url(f"{base}/")
                else:
                    page.goto(base + path)
                if name == "reveal":
                    page.fill("input[name=name]", f"CI on {width_name}")
                    page.check("input[name=scopes][value='repository:write']")
                    page.click("form.accesstokens-form button[type=submit]")
                    page.wait_for_selector("#token-secret")
                    # The secret is real; the picture shows a placeholder.
                    page.evaluate("document.getElementById('token-secret').textContent = 'bbat_…'")
                if name == "usage":
                    page.click("tr:has-text('Release job') a:has-text('Usage')")
                    page.wait_for_selector("#never-needed")
                if name == "tokens":  # show the recent clients, folded by default
                    page.evaluate(
                        "document.querySelectorAll('details.accesstokens-clients')"
                        ".forEach(d => { d.open = true; })"
                    )
                page.wait_for_load_state()
                facts[f"{name}-{width_name}"] = page.evaluate(MEASURE)
                page.screenshot(path=str(out / f"{name}-{width_name}.png"), full_page=True)
        finally:
            context.close()
    return facts


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, serving(seeded_app(Path(folder))) as base:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
            )
            try:
                capture(browser, base, OUT)
            finally:
                browser.close()
    print(f"Screenshots in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
