"""The browser for every browser test: Debian's Chromium driven by Playwright (never a downloaded browser), 1,400 px
wide, recording every resource that fails to load and every Content-Security-Policy violation."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}
# Third-party requests the Content-Security-Policy blocks on purpose: Redoc's "API docs by Redocly" footer logo.
BLOCKED_ON_PURPOSE = ("https://cdn.redoc.ly/",)


def watch_for_load_problems(page) -> None:
    """Record in ``page.load_problems`` every request that failed or answered >= 400 (a stylesheet or script
    that did not load) and every Content-Security-Policy violation the page reports."""
    page.load_problems = []

    def record(problem: str) -> None:
        if not any(url in problem for url in BLOCKED_ON_PURPOSE):
            page.load_problems.append(problem)

    def failed(request) -> None:
        # A page that reloads itself (a job page when its status changes) aborts what it was still loading:
        # net::ERR_ABORTED is the navigation's doing, not a missing file (that answers >= 400, recorded below).
        if "ERR_ABORTED" not in (request.failure or ""):
            record(f"{request.resource_type} {request.url} failed: {request.failure}")

    page.on("requestfailed", failed)
    page.on("response", lambda response: response.status >= 400 and record(
        f"{response.request.resource_type} {response.url} answered {response.status}"))
    page.on("console", lambda message: "Content Security Policy" in message.text and record(f"CSP: {message.text}"))


@pytest.fixture
def assert_styled():
    """``assert_styled(page)``: the admin's stylesheet applied (its header has the admin's colour, not the
    browser's default)."""

    def check(page) -> None:
        background = page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor")
        assert background not in {"rgba(0, 0, 0, 0)", "transparent"}, f"unstyled admin page: header {background}"

    return check


@pytest.fixture
def browser_page(monkeypatch):
    """A Playwright page in /usr/bin/chromium (skipped when it is missing, unless CRL_REQUIRE_SERVICES is set)."""
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
            watch_for_load_problems(page)
            yield page
        finally:
            browser.close()
            connections.close_all()


@pytest.fixture
def logged_in(browser_page, live_server, django_user_model):
    """(page, base url) with an operator (a superuser) logged in to the admin."""
    password = secrets.token_urlsafe(16)
    django_user_model.objects.create_superuser(username="operator", email="", password=password)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    return page, live_server.url


@pytest.fixture
def screenshot(browser_page):
    """``screenshot(name)``: a full-page PNG in $CRL_SCREENSHOT_DIR when it is set (for looking at the pages)."""
    folder = os.environ.get("CRL_SCREENSHOT_DIR")

    def take(name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            browser_page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return take
