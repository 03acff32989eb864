"""The operator's console in a real browser (Debian's Chromium, 1,400 px wide): worker health on the index, the
training run's launch form switching fields by data source, the charts on job and version pages."""
from __future__ import annotations

import datetime as dt
import secrets

import pytest
from django.utils import timezone

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def login(live_server, browser_page, django_user_model):
    password = secrets.token_urlsafe(16)
    django_user_model.objects.create_superuser(username="operator", email="", password=password)

    def go() -> None:
        browser_page.goto(f"{live_server.url}/admin/login/")
        browser_page.fill("#id_username", "operator")
        browser_page.fill("#id_password", password)
        browser_page.click("input[type=submit]")
        browser_page.wait_for_selector("#site-name")

    return go


def test_index_says_no_worker_listens_on_a_queue_with_waiting_jobs(live_server, browser_page, login, make_curriculum,
                                                                   screenshot):
    from training.models import TrainingRun

    TrainingRun.objects.create(curriculum=make_curriculum("algebra", concepts=5), concepts=5)  # waits on "gpu"
    login()
    browser_page.goto(f"{live_server.url}/admin/")
    panel = browser_page.wait_for_selector("#worker-health")
    assert 'No worker listens on queue "gpu"' in panel.text_content()
    row = browser_page.locator('#worker-health tr.queue[data-queue="gpu"]')
    assert "stranded" in row.get_attribute("class") and "none" in row.text_content()
    screenshot("index-worker-health")


def test_training_run_form_shows_the_fields_of_the_chosen_data_source(live_server, browser_page, login,
                                                                      make_curriculum, screenshot):
    make_curriculum("algebra", concepts=5)
    login()
    page = browser_page
    page.goto(f"{live_server.url}/admin/training/trainingrun/add/")
    visible = lambda name: page.locator(f".form-row.field-{name}").is_visible()  # noqa: E731
    assert (visible("num_users"), visible("dataset"), visible("interactions")) == (True, False, True)
    page.select_option("#id_data_source", "dataset")
    assert (visible("num_users"), visible("dataset")) == (False, True)
    page.select_option("#id_data_source", "review_log")
    assert (visible("num_users"), visible("dataset"), visible("epochs")) == (False, False, True)
    assert page.locator("#id_concepts").count() == 0
    assert page.locator("input[type=submit]").all_inner_texts() is not None
    assert page.locator("input[type=submit]").evaluate_all("els => els.map(e => e.value)") == ["Launch"]
    screenshot("trainingrun-add-review-log")


def test_version_page_shows_evaluation_and_loss_charts_above_its_config(live_server, browser_page, login,
                                                                       make_curriculum, make_policy, screenshot):
    from training.models import TrainingRun

    curriculum = make_curriculum("algebra", concepts=5)
    policy = make_policy(curriculum, recall=0.62)
    policy.metrics = {"metric": "mean_final_recall", "students": 30, "results": {
        name: {"mean": mean, "ci95": [mean - 0.02, mean + 0.02]}
        for name, mean in {"dt": 0.62, "random": 0.41, "round_robin": 0.48, "leitner": 0.55, "lowest_recall": 0.58,
                           "oracle": 0.7}.items()}}
    policy.save(update_fields=["metrics"])
    started = timezone.now() - dt.timedelta(minutes=3, seconds=20)
    run = TrainingRun.objects.create(
        curriculum=curriculum, concepts=5, status="succeeded", policy=policy, epochs=3, epoch=3, loss=1.1,
        started_at=started, finished_at=timezone.now(), loss_history=[1.9, 1.4, 1.1],
        loss_steps=[[s, 2.2 * 0.985 ** s + 0.9] for s in range(10, 301, 10)], metrics=policy.metrics)
    login()
    page = browser_page
    page.goto(f"{live_server.url}/admin/curriculum/policymodel/{policy.pk}/change/")
    evaluation = page.wait_for_selector("svg.bar-chart")
    loss = page.wait_for_selector("svg.loss-curve")
    config = page.wait_for_selector("details summary:has-text('dt_lite_config.json')")
    assert evaluation.is_visible() and loss.is_visible()
    assert evaluation.bounding_box()["y"] < config.bounding_box()["y"]
    assert loss.bounding_box()["y"] < config.bounding_box()["y"]
    assert "optimiser step" in loss.text_content() and "cross-entropy loss" in loss.text_content()
    screenshot("version-page")
    page.goto(f"{live_server.url}/admin/training/trainingrun/{run.pk}/change/")
    page.wait_for_selector("svg.loss-curve")
    assert "3 min 20 s" in page.text_content("#content-main")
    screenshot("trainingrun-page")
    page.goto(f"{live_server.url}/admin/training/trainingrun/")
    page.wait_for_selector("#result_list")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.querySelector('.results').scrollWidth,"
                           " document.querySelector('.results').clientWidth]")
    screenshot("trainingrun-list")
    assert widths[0] <= 1400 and widths[1] <= widths[2], f"the run list is clipped at 1,400 px: {widths}"


def test_job_lists_and_pages_fit_1400_px(live_server, browser_page, login, make_curriculum, screenshot):
    from curriculum.models import Learner, ReviewLog
    from training.models import SyntheticGenerationJob, TrajectoryExtractionJob

    curriculum = make_curriculum("algebra", concepts=5)
    now = timezone.now()
    generation = SyntheticGenerationJob.objects.create(
        curriculum=curriculum, num_users=30, interactions=10, status="succeeded", rows_written=300,
        started_at=now - dt.timedelta(seconds=42), finished_at=now)
    summary = {"mean": 1.0, "std": 0.3, "min": 0.2, "max": 1.9, "p10": 0.6, "p50": 1.0, "p90": 1.5,
               "histogram": {"edges": [0.2 + 0.17 * i for i in range(11)], "counts": [1, 3, 6, 9, 12, 9, 5, 3, 1, 1]}}
    extraction = TrajectoryExtractionJob.objects.create(
        curriculum=curriculum, status="succeeded", version=1, rows_read=300, started_at=now, finished_at=now,
        statistics={"episodes": 30, "steps": 300, "state_dim": 20, "return": summary,
                    "episode_length": {**summary, "histogram": {"edges": [9.5, 10.5], "counts": [30]}},
                    "actions": {"count": 5, "counts": {f"c{i}": 60 for i in range(5)}, "most_common": "c0",
                                "least_common": "c4", "normalised_entropy": 1.0}})
    learner = Learner.objects.create(external_id="ada")
    for i in range(12):
        ReviewLog.objects.create(learner=learner, curriculum=curriculum, concept=curriculum.concepts.get(position=i % 3),
                                 correct=i % 4 != 1, reviewed_at=now - dt.timedelta(hours=60 - 5 * i), source="live")
    login()
    page = browser_page
    for name, path in [
        ("generation-list", "/admin/training/syntheticgenerationjob/"),
        ("generation-page", f"/admin/training/syntheticgenerationjob/{generation.pk}/change/"),
        ("extraction-list", "/admin/training/trajectoryextractionjob/"),
        ("extraction-page", f"/admin/training/trajectoryextractionjob/{extraction.pk}/change/"),
        ("learner-page", f"/admin/curriculum/learner/{learner.pk}/change/"),
    ]:
        page.goto(live_server.url + path)
        page.wait_for_selector("#content-main")
        clipped = page.evaluate("""() => [...document.querySelectorAll('.results, #content-main, fieldset')]
            .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.className || el.id)""")
        assert clipped == [], f"{name}: clipped at 1,400 px: {clipped}"
        screenshot(name)
    page.goto(f"{live_server.url}/admin/training/syntheticgenerationjob/{generation.pk}/change/")
    assert page.input_value("#job-retry-seed") == str(generation.seed + 1)
    assert "second, identical cohort" in page.text_content("#job-retry-note")
    note, header = page.locator("#job-retry-note").bounding_box(), page.locator("#job-progress h2").bounding_box()
    tools = page.locator(".object-tools").bounding_box()
    assert note["y"] + note["height"] <= header["y"], f"the retry note overlaps the Progress header: {note} {header}"
    assert note["y"] >= tools["y"] + tools["height"], f"the retry note overlaps the retry button: {note} {tools}"


def test_comparison_lists_calibration_and_a_running_run_at_1400_px(live_server, browser_page, login, make_curriculum,
                                                                   make_policy, screenshot):
    from curriculum.models import Learner, ReviewLog
    from training.models import TrainingRun

    curriculum = make_curriculum("algebra", concepts=5)
    policy = make_policy(curriculum, recall=0.62)
    policy.description = "first synthetic run with a long description that the list shortens for the operator"
    policy.save(update_fields=["description"])
    now = timezone.now()
    TrainingRun.objects.create(curriculum=curriculum, concepts=5, status="succeeded", policy=policy, epochs=3,
                               epoch=3, loss=1.1, started_at=now - dt.timedelta(minutes=3), finished_at=now,
                               metrics=policy.metrics, device="cpu")
    running = TrainingRun.objects.create(curriculum=curriculum, concepts=5, status="running", epochs=1, epoch=1,
                                         loss=2.966, started_at=now - dt.timedelta(seconds=30), heartbeat_at=now,
                                         phase="evaluating", step=2, steps=5)
    learner = Learner.objects.create(external_id="ada")
    for i in range(40):
        ReviewLog.objects.create(learner=learner, curriculum=curriculum, concept=curriculum.concepts.get(position=i % 5),
                                 correct=i % 4 != 1, reviewed_at=now - dt.timedelta(days=80 - 2 * i), source="live")
    login()
    page = browser_page
    for name, path in [("trainingrun-list-columns", "/admin/training/trainingrun/"),
                       ("policy-list-columns", "/admin/curriculum/policymodel/"),
                       ("calibration-page", f"/admin/curriculum/curriculum/{curriculum.pk}/calibration/")]:
        page.goto(live_server.url + path)
        page.wait_for_selector("#content-main")
        clipped = page.evaluate("""() => [document.documentElement.scrollWidth > 1400 ? 'page' : '',
            ...[...document.querySelectorAll('.results, #content-main')]
            .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.className || el.id)].filter(Boolean)""")
        assert clipped == [], f"{name}: clipped at 1,400 px: {clipped}"
        screenshot(name)
    text = page.text_content("#content-main")
    assert "T" not in text.split("reviews from ")[1][:20]  # a formatted time, not ISO 8601
    assert page.locator("svg.calibration-plot").first.bounding_box()["width"] >= 600
    page.goto(f"{live_server.url}/admin/training/trainingrun/{running.pk}/change/")
    first = page.text_content("#job-duration")
    page.wait_for_timeout(2200)
    assert page.text_content("#job-duration") != first, "the runtime does not tick"
    assert page.text_content("#job-bar-label").startswith("stage 7 of 9: evaluating")  # the stage-aware bar
    screenshot("trainingrun-running")
