"""Browser fixtures shared by the orchestrator's browser tests: Debian's Chromium through Playwright (never a
downloaded browser), and a logged-in superuser page."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def chromium_page(monkeypatch):
    """A Playwright page in /usr/bin/chromium (skipped when it is missing, unless CRL_REQUIRE_SERVICES is set)."""
    if not CHROMIUM.exists():
        if os.environ.get("CRL_REQUIRE_SERVICES"):
            pytest.fail(f"{CHROMIUM} is missing and CRL_REQUIRE_SERVICES is set: install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()
            connections.close_all()


@pytest.fixture
def logged_in(chromium_page, live_server, django_user_model):
    """(page, base url) with an operator logged in to the admin."""
    password = secrets.token_urlsafe(16)
    django_user_model.objects.create_superuser(username="operator", email="", password=password)
    page = chromium_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    return page, live_server.url


@pytest.fixture
def screenshot(chromium_page):
    """screenshot(name): a full-page PNG in $CRL_SCREENSHOT_DIR when that is set (for looking at the pages)."""
    folder = os.environ.get("CRL_SCREENSHOT_DIR")

    def take(name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            chromium_page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return take
