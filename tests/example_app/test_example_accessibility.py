"""axe-core in Debian's Chromium on every page of the example app and of the
extension's admin pages, signed out and signed in: no serious or critical
violation.

axe-core comes from npm, never from a CDN: ``.ci/run`` installs it with
``npm install --prefix .cache/axe-core axe-core@4``; ``ACCESSTOKENS_TEST_AXE``
may point at another ``axe.min.js``. Without Chromium or axe-core the tests
skip and say why; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE_VARIABLE = "ACCESSTOKENS_TEST_AXE"
AXE_DEFAULT = ROOT / ".cache" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"
AXE = Path(os.environ.get(AXE_VARIABLE) or AXE_DEFAULT)
#: The impacts that fail a page. axe's others are "moderate" and "minor".
FAILING = ("serious", "critical")


def _unavailable() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found: install Debian's chromium package"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: pip install -e '.[test]' (no browser download)"
    if not AXE.is_file():
        return (
            f"axe-core not found at {AXE}: run `npm install --prefix .cache/axe-core axe-core@4`"
            f" (as .ci/run does), or set {AXE_VARIABLE} to an axe.min.js"
        )
    return None


REASON = _unavailable()
if REASON is not None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the accessibility check cannot run: {REASON}", pytrace=False)
    pytest.skip(REASON, allow_module_level=True)

from playwright import sync_api  # noqa: E402


def load_screenshots() -> Any:
    spec = importlib.util.spec_from_file_location("docs_screenshots", ROOT / "docs/screenshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = load_screenshots()

ADMIN = "/admin/repositories/acme/api/access-tokens"
PROJECT_ADMIN = "/admin/workspaces/acme/projects/API/access-tokens"
WORKSPACE_ADMIN = "/admin/workspaces/acme/access-tokens"

#: (who, name, path). "reveal", "confirm-revoke" and "confirm-rotate" are
#: reached by using the pages, as a person would.
PAGES = [
    (None, "login", "/login"),
    (None, "login-next", f"/login?next={ADMIN}"),
    ("alice", "home", "/"),
    ("alice", "workspace", "/acme/"),
    ("alice", "project", "/acme/workspace/projects/API"),
    ("alice", "repository", "/acme/api"),
    ("alice", "pull-request", "/acme/api/pull-requests/1"),
    ("alice", "repository-settings", "/acme/api/admin"),
    ("alice", "project-settings", "/acme/workspace/projects/API/settings"),
    ("alice", "workspace-settings", "/acme/workspace/settings"),
    ("alice", "free-workspace-settings", "/hobby/workspace/settings"),
    ("alice", "notifications", "/acme/workspace/notifications"),
    ("alice", "tokens", ADMIN),
    ("alice", "project-tokens", PROJECT_ADMIN),
    ("alice", "workspace-tokens", WORKSPACE_ADMIN),
    ("alice", "new-token", f"{ADMIN}/new"),
    ("alice", "new-project-token", f"{PROJECT_ADMIN}/new"),
    ("alice", "new-workspace-token", f"{WORKSPACE_ADMIN}/new"),
    ("alice", "reveal", f"{ADMIN}/new"),
    ("alice", "confirm-revoke", ADMIN),
    ("alice", "confirm-rotate", ADMIN),
    ("alice", "resubmitted", f"{ADMIN}?notice=resubmitted"),
    ("alice", "overview", f"{WORKSPACE_ADMIN}/all"),
    ("alice", "overview-errors", f"{WORKSPACE_ADMIN}/all?unused_days=x"),
    ("alice", "token-not-found", f"{ADMIN}/no-such-token/revoke"),
    ("bob", "member-home", "/"),
    ("bob", "member-repository", "/acme/api"),
    ("bob", "forbidden-tokens", ADMIN),
    ("bob", "forbidden-settings", "/acme/api/admin"),
    ("bob", "not-found", "/acme/nope"),
]

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
  }));
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("axe")
    app = screenshots.seeded_app(folder)
    with app.app_context():  # a pull request, for its page
        from example_app.extensions import db
        from example_app.models import find_repository
        from example_app.models import PullRequest

        repo = find_repository("acme", "api")
        db.session.add(
            PullRequest(repository=repo, number=1, title="Faster builds", source_branch="main",
                        author="Bob Builder", description="Caches the dependencies.")
        )  # fmt: skip
        db.session.commit()
    with screenshots.serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser(site: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=screenshots.LAUNCH_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def pages(browser: Any, site: str) -> Iterator[dict[str | None, Any]]:
    """One browser tab per visitor: signed out, alice (admin), bob (member)."""
    opened: dict[str | None, Any] = {}
    contexts = []
    for who in (None, "alice", "bob"):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        if who is not None:
            page.goto(f"{site}/login")
            page.fill("input[name=username]", who)
            page.fill("input[name=password]", "demo")
            page.click("button[type=submit]")
            page.wait_for_url(f"{site}/")
        opened[who] = page
    yield opened
    for context in contexts:
        context.close()


def open_page(page: Any, site: str, name: str, path: str) -> None:
    page.goto(site + path)
    if name == "reveal":
        page.fill("input[name=name]", "Accessibility check")
        page.check("input[name=scopes][value='repository:write']")
        page.click("form.accesstokens-form button[type=submit]")
        page.wait_for_selector("#token-secret")
    elif name.startswith("confirm-"):
        action = name.removeprefix("confirm-").capitalize()
        page.click(f".accesstokens-row-active a:has-text('{action}') >> nth=0")
        page.wait_for_selector("form button[type=submit]")
    page.wait_for_load_state()


@pytest.mark.parametrize(("who", "name", "path"), PAGES, ids=[p[1] for p in PAGES])
@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
def test_no_serious_accessibility_violation(
    pages: dict[str | None, Any], site: str, who: str | None, name: str, path: str, width: str
) -> None:
    page = pages[who]
    page.set_viewport_size({"width": screenshots.WIDTHS[width], "height": 800})
    open_page(page, site, name, path)
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    violations = page.evaluate(AXE_RUN)
    failing = [v for v in violations if v["impact"] in FAILING]
    assert not failing, "\n".join(
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['nodes'])}" for v in failing
    )


def test_signed_out_admin_pages_lead_to_the_checked_sign_in(
    pages: dict[str | None, Any], site: str
) -> None:
    """A signed-out visitor of an admin page lands on the sign-in page checked above."""
    page = pages[None]
    page.goto(site + ADMIN)
    landed = urlsplit(page.url)
    assert landed.path == "/login" and parse_qs(landed.query) == {"next": [ADMIN]}


def test_the_check_can_fail(pages: dict[str | None, Any]) -> None:
    """axe is really running: a page with an unlabelled image and field fails."""
    page = pages[None]
    page.set_content('<html><body><img src="x.png"><input type="text"></body></html>')
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    found = {v["id"]: v["impact"] for v in page.evaluate(AXE_RUN)}
    assert found.get("image-alt") in FAILING
    assert found.get("label") in FAILING


#: The extension's own layout (its ``accesstokens/base.html``, not overridden),
#: in the test app of tests/test_admin.py with the pages at /settings.
STANDALONE = "/settings/repositories/acme/api/access-tokens"
STANDALONE_PAGES = {
    "list": STANDALONE,
    "new": f"{STANDALONE}/new",
    "reveal": f"{STANDALONE}/new",
    "confirm-revoke": STANDALONE,
    "overview": "/settings/workspaces/acme/access-tokens/all",
    "forbidden": "/settings/repositories/hobby/notes/access-tokens?as=nobody",
}


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from test_admin import make_admin_app  # the root tests' helper app
    from werkzeug.serving import make_server

    from flask_accesstokens import AccessTokens

    folder = tmp_path_factory.mktemp("standalone")
    app, db, tokens = make_admin_app(f"sqlite:///{folder / 'admin.sqlite'}")
    with app.app_context():
        tokens.create_token(
            name="Deploy", workspace="acme", repository="api", scopes=["repository"]
        )
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


@pytest.mark.parametrize("name", list(STANDALONE_PAGES))
def test_admin_pages_in_their_own_layout(browser: Any, standalone: str, name: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        if name != "forbidden":
            page.goto(f"{standalone}/test-login?user=alice")
        open_page(page, standalone, name, STANDALONE_PAGES[name])
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
        failing = [v for v in page.evaluate(AXE_RUN) if v["impact"] in FAILING]
        assert not failing, failing
    finally:
        context.close()
