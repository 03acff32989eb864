"""Issue #25 item 11 in a real browser (Debian's Chromium): the layout and wording operators pointed out."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1366, 1920])
def test_the_export_panel_sits_below_the_curriculum_form_in_the_page(logged_in, make_curriculum, screenshot, width):
    page, url = logged_in
    curriculum = make_curriculum("algebra", concepts=5)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{url}/admin/curriculum/curriculum/{curriculum.pk}/change/")
    form = page.locator("#curriculum_form").bounding_box()
    panel = page.locator("#export-reviews").bounding_box()
    content = page.locator("#content").bounding_box()
    screenshot(f"curriculum-change-{width}")
    assert panel["y"] >= form["y"] + form["height"] - 1  # below the change form, not beside it
    assert content["x"] - 1 <= panel["x"] and panel["x"] + panel["width"] <= width + 1  # inside the page
    assert abs(panel["x"] - form["x"]) < 2  # aligned with the form, not pushed to the right


def test_cancelling_a_run_from_its_page_asks_first(logged_in, make_curriculum, screenshot):
    from training.models import TrainingRun

    page, url = logged_in
    run = TrainingRun.objects.create(curriculum=make_curriculum("algebra", concepts=5), concepts=5)
    page.goto(f"{url}/admin/training/trainingrun/{run.pk}/change/")
    page.click("#job-cancel")
    page.wait_for_selector("#cancel-confirm")
    screenshot("cancel-confirmation")
    assert "Are you sure you want to cancel this training run?" in page.text_content("#content-main")
    run.refresh_from_db()
    assert run.status == "queued"  # nothing happened yet
    page.click("#cancel-confirm input[type=submit]")
    page.wait_for_selector("#job-progress")
    run.refresh_from_db()
    assert run.status == "cancelled" and page.url.endswith(f"/trainingrun/{run.pk}/change/")
    assert not page.load_problems


def test_the_header_links_the_api_docs_which_render_styled(logged_in, screenshot):
    page, url = logged_in
    page.goto(f"{url}/admin/")
    header = page.text_content("#user-tools")
    assert "View site" not in header and "API docs" in header
    page.click("#api-docs-link")
    page.wait_for_selector(".swagger-ui .info .title")  # Swagger UI's scripts and styles loaded and ran
    screenshot("api-docs-from-the-header")
    assert page.url == f"{url}/api/docs/"
    assert page.eval_on_selector(".swagger-ui .info .title", "el => getComputedStyle(el).fontSize") != "16px"
    assert not page.load_problems


def test_a_run_still_extracting_shows_a_bar_short_of_100_percent(logged_in, make_curriculum, screenshot):
    from django.utils import timezone

    from training.jobs.stages import job_stages, stage_weight
    from training.models import TrainingRun

    page, url = logged_in
    run = TrainingRun.objects.create(curriculum=make_curriculum("algebra", concepts=5), status="running",
                                     data_source="review_log", started_at=timezone.now(), heartbeat_at=timezone.now(),
                                     phase="extracting trajectories", step=500, steps=500)
    page.goto(f"{url}/admin/training/trainingrun/{run.pk}/change/")
    bar = page.locator("#job-progress-bar")
    page.wait_for_timeout(2000)  # the poller has updated the bar from the status JSON at least once
    screenshot("run-extracting-bar")
    value = float(bar.evaluate("el => el.value"))
    weights = [stage_weight(stage) for stage in job_stages(run)]  # a stage's share is its share of the time
    assert value == pytest.approx(100 * sum(weights[:4]) / sum(weights), abs=0.1) and 0 < value < 15  # not 100%
    # the log's second pass (the encoder was fitted on the first)
    assert page.text_content("#job-bar-label").startswith("stage 4 of 9: extracting trajectories, 100%")


def test_the_learner_chart_ticks_fall_on_calendar_days(logged_in, make_curriculum, screenshot):
    import datetime as dt

    from curriculum.models import Learner, ReviewLog

    page, url = logged_in
    deck = make_curriculum("deck", concepts=3)
    learner = Learner.objects.create(external_id="ana")
    start = dt.datetime(2026, 1, 7, 15, 41, tzinfo=dt.timezone.utc)
    ReviewLog.objects.bulk_create([
        ReviewLog(learner=learner, curriculum=deck, concept=concept, correct=True, source="live",
                  reviewed_at=start + dt.timedelta(days=9 * i + k, hours=k))
        for i in range(12) for k, concept in enumerate(deck.concepts.order_by("position"))])
    page.goto(f"{url}/admin/curriculum/learner/{learner.pk}/change/")
    labels = page.locator("svg.line-chart g.x-ticks text").all_text_contents()
    screenshot("learner-calendar-ticks")
    assert labels and all(len(label) == 8 and label[3] == " " for label in labels), labels  # "Feb 2026"
    assert page.text_content(".review-counts").strip() == "36 reviews of 3 concepts."
