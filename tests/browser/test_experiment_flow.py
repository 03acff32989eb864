"""An experiment in a real browser (Debian's Chromium via Playwright) against a live server: an operator creates and
starts one from the orchestrator, learners are served and answer, the page shows the results, and the operator
promotes the winner."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from curriculum import serving
from curriculum.models import Experiment, PolicyModel, PromotionEvent
from curriculum.reviews.store import record_reviews
from curriculum.services import promote_policy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_start_an_experiment_see_results_and_promote_the_winner(make_curriculum, make_policy, logged_in, screenshot):
    curriculum = make_curriculum("algebra", concepts=3)
    v1 = make_policy(curriculum, recall=0.5)
    promote_policy(policy=v1, reason="first")
    v2 = make_policy(curriculum, recall=0.6)
    page, base = logged_in

    page.goto(f"{base}/admin/curriculum-ops/orchestrator/")
    page.click("#experiments-link-algebra")
    page.fill("#new-experiment input[name=name]", "v2 against v1")
    page.check(f"#candidate-{v2.version}")
    page.fill("#traffic", "50, 50")
    page.click("#create-experiment")
    page.wait_for_selector("#start-experiment")
    page.click("#start-experiment")
    page.wait_for_selector("#stop-experiment")
    assert page.text_content("#experiment-status") == "running"
    experiment = Experiment.objects.get()

    # learners are served by their arms (these fake versions cannot load: the fallback answers in their name) and
    # answer the recommended concept: right every time in arm B, every other time in arm A
    arms = {arm.pk: arm.label for arm in experiment.arms.all()}
    now = timezone.now()
    for i in range(40):
        learner = f"u{i}"
        for step in range(2):
            rec = serving.recommend(curriculum="algebra", learner=learner, at=now + dt.timedelta(seconds=step))
            label = arms[experiment.arms.get(recommendations__id=rec.recommendation_id).pk]
            record_reviews(items=[{"curriculum": "algebra", "learner": learner, "concept": rec.concept,
                                   "correct": label == "B" or (i + step) % 2 == 0,
                                   "reviewed_at": (now + dt.timedelta(seconds=step + 0.5)).isoformat(),
                                   "recommendation_id": rec.recommendation_id}])

    page.reload()
    summary = page.text_content("#experiment-summary")
    assert "B is ahead of A by" in summary and "learners per arm" in summary
    assert page.is_visible("svg.experiment-chart") and "Traffic served per arm" in page.content()
    screenshot("experiment-results")

    page.select_option("#winner-arm", label=f"B (v{v2.version})")
    page.fill("#winner-reason", "B recalls more on real learners")
    page.click("#promote-winner-button")
    page.wait_for_selector("text=promoted")
    assert PolicyModel.objects.get(status="active").pk == v2.pk
    assert PromotionEvent.objects.get(to_version=v2.version).experiment_id == experiment.pk
    assert page.text_content("#experiment-status") == "stopped"
    assert page.load_problems == []
