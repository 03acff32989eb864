"""The operator's path in a real browser (Debian's Chromium via Playwright) against a live server and a real
Celery worker: log in, launch a small training run, watch its progress, promote it on the orchestrator page."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


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
            page = browser.new_page()
            page.set_default_timeout(30_000)
            watch_for_load_problems(page)
            yield page
        finally:
            browser.close()
            connections.close_all()


# Third-party requests the Content-Security-Policy blocks on purpose: Redoc's "API docs by Redocly" footer logo.
BLOCKED_ON_PURPOSE = ("https://cdn.redoc.ly/",)


def watch_for_load_problems(page) -> None:
    """Record in ``page.load_problems`` every request that failed or answered >= 400 (a stylesheet or script
    that did not load) and every Content-Security-Policy violation the page reports."""
    page.load_problems = []

    def record(problem: str) -> None:
        if not any(url in problem for url in BLOCKED_ON_PURPOSE):
            page.load_problems.append(problem)

    page.on("requestfailed", lambda request: record(f"{request.resource_type} {request.url} failed: {request.failure}"))
    page.on("response", lambda response: response.status >= 400 and record(
        f"{response.request.resource_type} {response.url} answered {response.status}"))
    page.on("console", lambda message: "Content Security Policy" in message.text and record(f"CSP: {message.text}"))


def assert_styled(page) -> None:
    """The admin's stylesheet applied: its header has the admin's colour, not the browser's default."""
    background = page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor")
    assert background not in {"rgba(0, 0, 0, 0)", "transparent"}, f"unstyled admin page: header {background}"


@pytest.fixture
def operator_password(make_curriculum, django_user_model) -> str:
    """A curriculum to train for and an operator login (made before the browser starts)."""
    make_curriculum("algebra", concepts=5)
    password = secrets.token_urlsafe(16)
    django_user_model.objects.create_superuser(username="operator", email="", password=password)
    return password


@pytest.mark.trains
def test_operator_launches_a_run_watches_it_and_promotes_it(celery_worker, live_server, operator_password, browser_page):
    page, password = browser_page, operator_password

    page.goto(f"{live_server.url}/admin/login/")
    assert_styled(page)
    page.fill("#id_username", "operator")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#orchestrator-link")

    page.goto(f"{live_server.url}/admin/training/trainingrun/add/")
    page.select_option("#id_curriculum", label="algebra")
    for field, value in {"num_users": "40", "interactions": "20", "concepts": "5", "epochs": "40",
                         "batch_size": "16", "eval_students": "30"}.items():
        page.fill(f"#id_{field}", value)
    page.check("#id_no_cuda")
    page.click("input[name=_save]")
    page.wait_for_selector("#job-progress")

    # The page follows the run by itself (no reload by the operator) until it finishes.
    seen: set[tuple[str, bool]] = set()
    deadline = time.monotonic() + 600  # generous: a busy 2-core machine trains slowly; it ends at "succeeded"
    while time.monotonic() < deadline:
        status = page.text_content("#job-status").strip()
        percent = float(page.get_attribute("#job-progress-bar", "value") or 0)
        seen.add((status, 0 < percent < 100))
        if status in {"succeeded", "failed", "cancelled"}:
            break
        time.sleep(0.25)
    assert status == "succeeded", page.text_content("#content-main")
    assert ("running", True) in seen, f"never saw the run in progress: {seen}"
    page.wait_for_selector("svg.loss-curve")

    page.goto(f"{live_server.url}/admin/")
    page.click("#orchestrator-link a")
    page.wait_for_selector("#version-algebra-1")
    page.fill("#version-algebra-1 input[name=reason]", "first trained version")
    page.click("#promote-algebra-1")
    page.wait_for_selector("text=algebra v1 is now the active version.")
    assert "active" in page.get_attribute("#version-algebra-1", "class")
    assert "first trained version" in page.text_content("#curriculum-algebra table")
    assert page.load_problems == []
