"""The admin pages end to end, in real headless Chromium through Playwright.

Needs the ``playwright`` Python package and Debian's ``chromium`` at
/usr/bin/chromium (``apt-get install chromium``; never ``playwright install``).
Screenshots of every page go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import NamedTuple

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_accesstokens import AccessTokens

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's chromium package to run the browser tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is missing: pip install playwright (no browser download)",
)

from test_admin import make_admin_app  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = "/settings/repositories/acme/api/access-tokens"


class Live(NamedTuple):
    url: str
    app: Flask
    tokens: AccessTokens

    def token_names(self) -> list[str]:
        """The repository's tokens as stored, to count what the pages created."""
        with self.app.app_context():
            return [t.name for t in self.tokens.list_tokens("acme", repository="api")]

    def rotations(self) -> int:
        with self.app.app_context():
            events = AccessTokens.service().events()
            return [e.action for e in events].count("rotated")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Live]:
    """The test app on a loopback port, in a thread, for this test only."""
    app, db, tokens = make_admin_app(f"sqlite:///{tmp_path / 'browser.sqlite'}")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Live(f"http://127.0.0.1:{server.server_port}", app, tokens)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def status_with(base: str, secret: str) -> int:
    """Use a token the way a script would: over real HTTP, no cookies."""
    req = urllib.request.Request(
        f"{base}/repositories/acme/api", headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def leave_by_history(page: Any, step: str) -> None:
    """Go back or forward. Onto the answer of a POST, Chromium shows its own
    "Confirm Form Resubmission" page (net::ERR_CACHE_MISS), since the answer was
    no-store; a browser that kept the page in its back-forward cache instead
    runs the script that moves on to the token list. Either way, no secret."""
    try:
        getattr(page, step)()
    except sync_api.Error as e:
        assert "ERR_CACHE_MISS" in str(e)
        page.wait_for_url(lambda url: url.startswith("chrome-error://"))
    page.wait_for_load_state()


def resubmitted(response: Any) -> bool:
    """Whether a navigation sent the form again and was led to the notice."""
    previous = response.request.redirected_from
    return (
        previous is not None
        and previous.method == "POST"
        and response.url.endswith(f"{REPO}?notice=resubmitted")
    )


def signed_in_page(browser: Any, base: str, **context_options: Any) -> Any:
    context = browser.new_context(**context_options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base}/test-login?user=alice")
    return page


def test_create_use_revoke_and_never_see_the_secret_again(browser: Any, live_server: Live) -> None:
    base = live_server.url
    page = signed_in_page(browser, base, viewport={"width": 1280, "height": 800})
    page.goto(f"{base}{REPO}")
    assert page.get_by_role("heading", name="Access tokens").is_visible()
    shot(page, "list-empty")

    page.get_by_role("link", name="Create access token").click()
    page.get_by_label("Name").fill("Deploy bot")
    page.check('input[value="pullrequest:write"]')
    # With JavaScript on, what the choice implies is ticked and marked.
    implied = page.locator('input[value="repository:write"]')
    assert implied.is_checked() and implied.is_disabled()
    mark = page.locator(".accesstokens-scope", has=implied).locator(".accesstokens-implied-mark")
    assert mark.is_visible()
    shot(page, "create-form")

    # The secret is in the answer to the form itself: no redirect to it.
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create").click()
    assert answer.value.status == 200 and answer.value.request.redirected_from is None
    assert answer.value.headers["cache-control"] == "no-store"
    secret = page.locator("#token-secret").inner_text().strip()
    assert secret.startswith("bbat_")
    assert secret not in page.url
    assert all(secret not in c["value"] for c in page.context.cookies())
    assert page.get_by_role("button", name="Copy").is_visible()
    shot(page, "reveal")
    assert status_with(base, secret) == 200

    # Reloading sends the form again: it creates nothing and shows no secret.
    reloaded = page.reload()
    assert resubmitted(reloaded)
    assert page.locator("#form-resubmitted").is_visible()
    assert secret not in page.content()
    assert live_server.token_names() == ["Deploy bot"]
    shot(page, "reveal-after-reload")
    leave_by_history(page, "go_back")  # the form, opened afresh
    assert page.get_by_role("heading", name="Create access token").is_visible()
    leave_by_history(page, "go_forward")
    assert secret not in page.content()
    assert live_server.token_names() == ["Deploy bot"]

    # Rotate, leave the new secret, then come back to it.
    page.goto(f"{base}{REPO}")
    page.locator("tr", has_text="Deploy bot").get_by_role("link", name="Rotate").click()
    page.get_by_role("button", name="Rotate").click()
    rotated = page.locator("#token-secret").inner_text().strip()
    assert rotated.startswith("bbat_") and rotated != secret
    page.get_by_role("link", name="I have copied the token").click()
    row = page.locator("tr", has_text="Deploy bot")
    assert "active" in row.inner_text().lower()
    shot(page, "list")
    leave_by_history(page, "go_back")
    assert secret not in page.content() and rotated not in page.content()
    shot(page, "reveal-after-back")
    leave_by_history(page, "go_forward")
    assert rotated not in page.content()
    assert live_server.rotations() == 1 and live_server.token_names() == ["Deploy bot"]
    assert status_with(base, rotated) == 200

    page.goto(f"{base}{REPO}")
    page.locator("tr", has_text="Deploy bot").get_by_role("link", name="Revoke").click()
    assert page.get_by_role("heading", name="Revoke access token").is_visible()
    shot(page, "confirm-revoke")
    page.get_by_role("button", name="Revoke").click()
    assert "revoked" in page.locator("tr", has_text="Deploy bot").inner_text().lower()
    shot(page, "list-revoked")

    assert status_with(base, rotated) == 401

    page.goto(f"{base}/settings/workspaces/acme/access-tokens/all?type=repository")
    assert page.locator("tr", has_text="Deploy bot").is_visible()
    shot(page, "overview")
    page.goto(f"{base}/test-login?user=bob")
    page.goto(f"{base}{REPO}")
    assert page.get_by_role("heading", name="Forbidden").is_visible()
    assert page.locator("tr", has_text="Deploy bot").count() == 0
    shot(page, "forbidden")
    page.context.close()


def test_works_with_javascript_off(browser: Any, live_server: Live) -> None:
    base = live_server.url
    page = signed_in_page(
        browser, base, java_script_enabled=False, viewport={"width": 1280, "height": 800}
    )
    page.goto(f"{base}{REPO}/new")
    # The implication is spelled out next to the scope instead.
    item = page.locator(".accesstokens-scope", has=page.locator('input[value="pullrequest:write"]'))
    assert "Includes" in item.inner_text() and "Repositories: Write" in item.inner_text()
    page.get_by_label("Name").fill("No JS")
    page.get_by_role("button", name="Create").click()
    assert page.locator("#scopes-error").is_visible()
    assert page.get_by_label("Name").input_value() == "No JS"
    shot(page, "create-form-error-nojs")

    page.check('input[value="repository"]')
    page.get_by_role("button", name="Create").click()
    secret = page.locator("#token-secret").inner_text().strip()
    assert status_with(base, secret) == 200
    assert not page.get_by_role("button", name="Copy").is_visible()  # needs JavaScript

    page.get_by_role("link", name="I have copied the token").click()
    leave_by_history(page, "go_back")
    assert secret not in page.content()
    # Chromium offers to send the form again; doing so creates nothing.
    assert resubmitted(page.reload())
    assert page.locator("#form-resubmitted").is_visible()
    assert secret not in page.content()
    shot(page, "resubmitted-nojs")
    assert live_server.token_names() == ["No JS"]

    page.locator("tr", has_text="No JS").get_by_role("link", name="Rotate").click()
    shot(page, "confirm-rotate-nojs")
    page.get_by_role("button", name="Rotate").click()
    assert page.get_by_role("heading", name="Token rotated").is_visible()
    shot(page, "reveal-rotated-nojs")
    rotated = page.locator("#token-secret").inner_text().strip()
    assert rotated != secret
    assert resubmitted(page.reload())
    assert rotated not in page.content()
    assert live_server.rotations() == 1
    assert status_with(base, rotated) == 200 and status_with(base, secret) == 401
    page.context.close()


def test_readable_on_a_phone(browser: Any, live_server: Live) -> None:
    base = live_server.url
    page = signed_in_page(
        browser,
        base,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    for name in ("Phone token", "Another"):
        page.goto(f"{base}{REPO}/new")
        page.get_by_label("Name").fill(name)
        page.check('input[value="repository"]')
        page.get_by_role("button", name="Create").click()
        assert page.locator("#token-secret").is_visible()
        assert fits_the_screen(page)
    shot(page, "reveal-mobile")

    for url, name in (
        (REPO, "list-mobile"),
        (f"{REPO}/new", "create-form-mobile"),
        ("/settings/workspaces/acme/access-tokens/all", "overview-mobile"),
    ):
        page.goto(f"{base}{url}")
        assert fits_the_screen(page), f"{url} scrolls sideways on a phone"
        shot(page, name)
    # Each token is a card whose cells say what they are.
    cell = page.locator('tr:has-text("Phone token") td[data-label="Scopes"]')
    assert cell.is_visible() and cell.bounding_box()["width"] <= 390
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('td')).fontSize)")
    assert font >= 14
    page.context.close()


def fits_the_screen(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))
