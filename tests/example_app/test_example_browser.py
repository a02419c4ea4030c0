"""The example app's pages in headless Chromium, at desktop and phone widths:
the pages the docs show (``docs/screenshots.py`` takes both), measured."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def load_screenshots() -> Any:
    spec = importlib.util.spec_from_file_location("docs_screenshots", ROOT / "docs/screenshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = load_screenshots()


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("browser")
    app = screenshots.seeded_app(folder)
    with screenshots.serving(app) as base, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=screenshots.LAUNCH_ARGS
        )
        try:
            yield screenshots.capture(browser, base, folder / "shots")
        finally:
            browser.close()


@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
@pytest.mark.parametrize("page", list(screenshots.PAGES))
def test_pages_fit_the_screen(facts: dict[str, dict[str, Any]], page: str, width: str) -> None:
    measured = facts[f"{page}-{width}"]
    assert measured["viewport"] == screenshots.WIDTHS[width]
    assert measured["hasViewportMeta"]
    assert measured["scrollWidth"] <= measured["viewport"], "scrolls sideways"
    assert measured["iframes"] == 0
    assert measured["h1"] == 1


@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
def test_copied_button_is_on_screen(facts: dict[str, dict[str, Any]], width: str) -> None:
    measured = facts[f"reveal-{width}"]
    assert measured["copiedVisible"]
    assert measured["copiedRight"] <= measured["viewport"]


def test_every_token_row_reaches_the_tables_edge(facts: dict[str, dict[str, Any]]) -> None:
    """A revoked token (no actions) keeps its last cell on a desktop: its
    bottom border is as long as the others'."""
    rights = facts["tokens-desktop"]["rowRights"]
    assert len(rights) >= 3 and len(set(rights)) == 1, rights


@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
def test_overview_filters_share_a_baseline(facts: dict[str, dict[str, Any]], width: str) -> None:
    bottoms = facts[f"overview-{width}"]["filterBottoms"]
    assert len(bottoms) == 5
    if width == "desktop":  # one row: every control ends on the same line
        assert max(bottoms) - min(bottoms) <= 1, bottoms
        tops = facts[f"overview-{width}"]["filterTops"]
        assert max(tops) - min(tops) <= 1, tops


@pytest.mark.parametrize("page", ["new-token", "tokens", "overview"])
def test_one_back_link_per_page(facts: dict[str, dict[str, Any]], page: str) -> None:
    assert facts[f"{page}-desktop"]["backLinks"] == 1


def test_revoked_cards_have_no_actions_label(facts: dict[str, dict[str, Any]]) -> None:
    assert facts["tokens-phone"]["revokedActionsDisplay"] == "none"


@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
def test_owner_controls_are_shown(facts: dict[str, Any], width: str) -> None:
    tokens_page = facts[f"tokens-{width}"]
    assert tokens_page["expiringSoon"] == 1
    assert tokens_page["recentClients"] == 1
    assert tokens_page["allowedIps"] == 1
    assert facts[f"notifications-{width}"]["notifications"] == 1


@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
def test_resubmitted_notice_reads_as_a_warning(
    facts: dict[str, dict[str, Any]], width: str
) -> None:
    assert facts[f"resubmitted-{width}"]["noticeBackground"] == "rgb(255, 250, 230)"


@pytest.mark.parametrize("width", list(screenshots.WIDTHS))
def test_usage_says_what_was_never_needed(facts: dict[str, Any], width: str) -> None:
    never = facts[f"usage-{width}"]["neverNeeded"]
    assert never is not None and "Never needed: Pipelines: Read" in " ".join(never.split())


def test_the_docs_show_every_page_at_both_widths() -> None:
    page = (ROOT / "docs" / "example.rst").read_text(encoding="utf-8")
    for name in screenshots.PAGES:
        for width in screenshots.WIDTHS:
            image = f"_static/example/{name}-{width}.png"
            assert (ROOT / "docs" / image).is_file(), f"run docs/screenshots.py: {image}"
            assert image in page
