"""The orchestrator in a real browser (Debian's Chromium via Playwright) against a live server: the gate refuses
an unlike comparison (means over different decks: the candidate is held to the fallback over its own concepts, which
needs an evaluation first) and accepts a like one, confirmation pages for promotion and rollback, re-promoting a retired
version, the side-by-side comparison (what differs), the warning about concepts the active version does not cover,
and "Evaluate under the protocol" with its job's progress, then the evaluation on students like the curriculum's own."""
from __future__ import annotations

import pytest

from curriculum.models import PolicyModel
from curriculum.services import promote_policy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FEWER_REVIEWS = {"students": 200, "seed": 1234, "interactions": 30, "horizon_s": 86400.0}


@pytest.fixture
def versions(make_curriculum, make_policy):
    """algebra (5 concepts): v1 active, evaluated with 30 reviews per student (not the protocol's 100) and covering
    c0-c2 only; v2 a candidate over all 5 evaluated under the protocol, lower in raw numbers than v1; the fallback
    not evaluated under the protocol yet."""
    curriculum = make_curriculum("algebra", concepts=5)
    v1 = make_policy(curriculum, recall=0.60, random=0.48, protocol=FEWER_REVIEWS, before_protocols=True,
                     fallback=None)
    v2 = make_policy(curriculum, recall=0.28, random=0.20, fallback=None)
    PolicyModel.objects.filter(pk=v1.pk).update(config={"concept_keys": ["c0", "c1", "c2"], "hidden_dim": 64})
    PolicyModel.objects.filter(pk=v2.pk).update(config={"concept_keys": [f"c{i}" for i in range(5)], "hidden_dim": 128})
    promote_policy(policy=v1, force=True, reason="before evaluation protocols")
    return curriculum, v1, v2


def test_gate_confirmations_rollback_repromotion_and_comparison(versions, logged_in, screenshot, store_fallback):
    curriculum, v1, v2 = versions
    page, base = logged_in

    page.goto(f"{base}/admin/curriculum-ops/orchestrator/")
    warning = page.text_content("#uncovered-algebra")
    assert "cannot score 2" in warning and "c3, c4" in warning
    assert "curriculum algebra" in page.text_content("#curriculum-algebra h2")
    assert "not comparable" in page.text_content("#version-algebra-1")  # v1's 0.60 is under another protocol
    screenshot("01-orchestrator")

    # v2 covers 5 concepts, v1 3: their means are over different decks, so v2 is held to the fallback over its 5
    # concepts, which has no evaluation under the protocol yet: refused, with the way to evaluate it.
    assert "over 5 concepts, the active v1 over 3: not comparable" in page.text_content("#version-algebra-2")
    page.click("#promote-algebra-2")
    page.wait_for_selector("#confirm")
    assert "from v1 to v2" in page.text_content("#confirm h2")
    gate = page.text_content("#gate")
    assert "v2 is evaluated over 5 concepts and the active v1 over 3" in gate
    assert "has no evaluation under the curriculum's protocol over 5 concepts yet" in gate
    assert page.is_visible("#evaluate-algebra-2")
    screenshot("02-confirm-refused")
    page.fill("#confirm-form input[name=reason]", "v2 looks better")
    page.click("#confirm-button")
    page.wait_for_selector("text=Promotion refused")
    assert PolicyModel.objects.get(status="active").version == 1

    # A worker evaluates the fallback over v2's 5 concepts (what evaluating v2 under the protocol stores beside it).
    store_fallback(curriculum, mean=0.26, num_concepts=5)
    page.goto(f"{base}/admin/curriculum-ops/orchestrator/policies/{v2.pk}/promote")
    gate = page.text_content("#gate")
    assert "passes" in gate and "beats the fallback (lowest_recall, 0.2600) over its concepts" in gate
    assert "0.2800" in page.text_content("#confirm-to")
    assert "covers 3 of 5 concepts" in page.text_content("#confirm-from")
    screenshot("03-confirm-passes")
    page.fill("#confirm-form input[name=reason]", "better under the same protocol")
    page.click("#confirm-button")
    page.wait_for_selector("text=algebra v2 is now the active version.")
    assert not page.is_visible("#uncovered-algebra")  # v2 covers every concept

    # Rollback names its target and goes through a confirmation page.
    assert page.text_content("#rollback-algebra").strip() == "Roll back to v1\u2026"
    page.click("#rollback-algebra")
    page.wait_for_selector("#confirm")
    assert "Roll back curriculum algebra: back from v2 to the previously active v1" in " ".join(
        page.text_content("#confirm h2").split())
    page.fill("#confirm-form input[name=reason]", "complaints from teachers")
    page.click("#confirm-button")
    page.wait_for_selector("text=rolled back from v2 to v1")
    screenshot("04-after-rollback")

    # The retired v2 is still listed and can be promoted again, through the gate.
    assert "retired" in page.text_content("#version-algebra-2")
    page.fill("#description-algebra-2", "full curriculum, hidden 128")
    page.click("#version-algebra-2 form[action$='description'] button")
    page.wait_for_selector("text=description saved")
    page.click("#promote-algebra-2")
    page.wait_for_selector("#confirm")
    assert "full curriculum, hidden 128" in page.text_content("#confirm-to")
    page.fill("#confirm-form input[name=reason]", "complaints were about content, not the policy")
    page.click("#confirm-button")
    page.wait_for_selector("text=algebra v2 is now the active version.")

    # Side by side: parameters, lift, charts.
    page.check("#version-algebra-1 input[name=v]")
    page.check("#version-algebra-2 input[name=v]")
    page.click("#compare-button-algebra")
    page.wait_for_selector("#compare-table")
    table = page.text_content("#compare-table")
    assert "lift over random" in table and "0.0800" in table
    differences = page.text_content("#differences-table")  # only what differs: hidden 64 vs 128, the concepts
    assert "hidden_dim" in differences and "64" in differences and "128" in differences
    assert page.is_visible("#compare-axis")  # the charts share an axis scaled to their results
    assert page.locator("#compare svg").count() == 2
    screenshot("05-compare")


def test_the_curriculum_page_says_which_concepts_the_active_version_does_not_cover(versions, logged_in, screenshot):
    curriculum, _, _ = versions
    page, base = logged_in
    page.goto(f"{base}/admin/curriculum/curriculum/{curriculum.pk}/change/")
    text = page.text_content("#uncovered-concepts")
    assert "v1 does not cover 2 of 5 concepts: c3, c4" in text
    screenshot("06-curriculum-coverage")


def test_evaluate_under_the_protocol_shows_the_jobs_progress_then_the_result(versions, logged_in, screenshot,
                                                                             evaluation_metrics, monkeypatch):
    """The button launches a job (no broker message needed here), the version shows its progress, which follows the
    job live, and the page shows the evaluation (and students like the curriculum's own) when it finishes."""
    from crlsite.celery import app
    from training.jobs.stages import job_stages, stage_weight
    from training.models import ProtocolEvaluationJob

    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)  # no worker: the test plays its part
    curriculum, v1, _ = versions
    page, base = logged_in
    page.goto(f"{base}/admin/curriculum-ops/orchestrator/")
    page.click("#evaluate-algebra-1")
    page.wait_for_selector("#evaluation-algebra-1")
    assert "queued: waiting for a worker" in page.text_content("#evaluation-algebra-1")
    assert not page.is_visible("#evaluate-algebra-1")  # one job per version and protocol: no second button
    job = ProtocolEvaluationJob.objects.get()
    ProtocolEvaluationJob.objects.filter(pk=job.pk).update(status="running", phase="evaluating", step=3,
                                                           steps=8, started_at=job.created_at)
    page.wait_for_selector("#evaluation-algebra-1 .evaluation-label:has-text('stage 2 of 2: evaluating, 38% (3 / 8)')",
                           timeout=15000)  # queued -> running: the page reloads
    ProtocolEvaluationJob.objects.filter(pk=job.pk).update(step=6)
    page.wait_for_selector("#evaluation-algebra-1 .evaluation-label:has-text('(6 / 8)')", timeout=15000)  # live
    weights = [stage_weight(stage) for stage in job_stages(job)]  # copying, evaluating (6 of 8 done): v1 is active, no fallback stage
    assert page.eval_on_selector("#evaluation-algebra-1 progress", "bar => bar.value") == round(
        100 * (weights[0] + 0.75 * weights[1]) / sum(weights), 1)
    screenshot("07-evaluation-progress")

    protocol = curriculum.protocol
    stored = evaluation_metrics(recall=0.2612, random=0.20, protocol=protocol.to_dict())
    stored["students_like"] = {"dt": {"mean": 0.4321, "ci95": [0.42, 0.44]}, "random": {"mean": 0.30, "ci95": [0.29, 0.31]}}
    PolicyModel.objects.filter(pk=v1.pk).update(evaluations={protocol.key: stored})
    ProtocolEvaluationJob.objects.filter(pk=job.pk).update(status="succeeded", step=8)
    page.wait_for_selector("#version-algebra-1 .recall:has-text('0.2612')", timeout=15000)  # reloaded by the poller
    assert not page.is_visible("#evaluation-algebra-1")
    like = page.text_content("#students-like-algebra-1")
    assert "0.4321" in like and "0.1321" in like  # dt, and dt - random
    screenshot("08-evaluated-students-like")
