"""The browser: Debian's Chromium driven by Playwright (never a downloaded browser), 1,400 px wide."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture
def browser_page(monkeypatch):
    if not CHROMIUM.exists():
        if os.environ.get("CRL_REQUIRE_SERVICES"):
            pytest.fail(f"{CHROMIUM} is missing and CRL_REQUIRE_SERVICES is set: install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); set CRL_REQUIRE_SERVICES=1 to make this a failure")
    from playwright.sync_api import sync_playwright

    from django.db import connections

    # Playwright's sync API runs an event loop in this thread: ORM calls made meanwhile are synchronous
    # still, but get a connection of their own, closed here so the test database can be dropped.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
            connections.close_all()


@pytest.fixture
def screenshot(browser_page):
    """``screenshot(name)``: a full-page PNG in $CRL_SCREENSHOT_DIR when it is set (for looking at the pages)."""
    folder = os.environ.get("CRL_SCREENSHOT_DIR")

    def take(name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            browser_page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return take
