"""The operator's path in a real browser (Debian's Chromium via Playwright) against a live server and a real
Celery worker: log in, launch a small training run, watch its progress, promote it on the orchestrator page."""
from __future__ import annotations

import secrets
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PlaywrightError = pytest.importorskip("playwright.sync_api").Error


@pytest.fixture
def operator_password(make_curriculum, django_user_model) -> str:
    """A curriculum to train for and an operator login (made before the browser starts)."""
    make_curriculum("algebra", concepts=5)
    password = secrets.token_urlsafe(16)
    django_user_model.objects.create_superuser(username="operator", email="", password=password)
    return password


@pytest.mark.trains
def test_operator_launches_a_run_watches_it_and_promotes_it(celery_worker, live_server, operator_password, browser_page, assert_styled):
    page, password = browser_page, operator_password

    page.goto(f"{live_server.url}/admin/login/")
    assert_styled(page)
    page.fill("#id_username", "operator")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#orchestrator-link")

    page.goto(f"{live_server.url}/admin/training/trainingrun/add/")
    page.select_option("#id_curriculum", label="algebra")
    for field, value in {"num_users": "40", "interactions": "20", "epochs": "40",
                         "batch_size": "16", "eval_students": "30"}.items():
        page.fill(f"#id_{field}", value)
    page.check("#id_no_cuda")
    page.click("input[value=Launch]")
    page.wait_for_selector("#job-progress")

    # The page follows the run by itself (no reload by the operator) until it finishes.
    seen: set[tuple[str, bool]] = set()
    deadline = time.monotonic() + 600  # generous: a busy 2-core machine trains slowly; it ends at "succeeded"
    while time.monotonic() < deadline:
        try:  # the page reloads itself when the status changes
            status = page.text_content("#job-status").strip()
            percent = float(page.get_attribute("#job-progress-bar", "value") or 0)
        except PlaywrightError:
            time.sleep(0.25)
            continue
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
    page.click("#promote-algebra-1")  # a confirmation page: from which version to which, the gate's verdict
    page.wait_for_selector("#confirm-form")
    page.fill("#confirm-form input[name=reason]", "first trained version")
    if page.query_selector("#confirm-form input[name=force]"):  # a tiny model may evaluate below random
        page.check("#confirm-form input[name=force]")
    page.click("#confirm-button")
    page.wait_for_selector("text=algebra v1 is now the active version.")
    assert "active" in page.get_attribute("#version-algebra-1", "class")
    assert "first trained version" in page.text_content("#history-algebra")
    assert page.load_problems == []
