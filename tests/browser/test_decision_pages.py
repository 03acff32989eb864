"""What the operator decides with, in a real browser (Debian's Chromium, 1,400 px wide): the audit list of promotions
(times to the second with zone, a long reason wrapped, not pushing the table off the page), a version's object
history, and a protocol evaluation job on the worker panel and its own page."""
from __future__ import annotations

import pytest
from django.utils import timezone

from curriculum.models import PolicyModel
from curriculum.services import promote_policy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NOT_FITTING = """() => [document.documentElement.scrollWidth > 1400 ? 'page' : '',
    ...[...document.querySelectorAll('.results, #content-main')]
    .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.className || el.id)].filter(Boolean)"""


def test_the_audit_list_wraps_a_long_reason_and_shows_seconds_and_zone(logged_in, make_curriculum, make_policy,
                                                                      django_user_model, screenshot):
    page, base = logged_in
    curriculum = make_curriculum("algebra", concepts=3)
    operator = django_user_model.objects.get(username="operator")
    reason = ("A/B experiment 2026-03 arm B: " + "lift-over-lowest-recall-confirmed-on-two-cohorts-" * 8).strip()
    event = promote_policy(policy=make_policy(curriculum, recall=0.5), actor=operator, reason=reason, force=True)
    page.goto(f"{base}/admin/curriculum/promotionevent/")
    page.wait_for_selector("#result_list")
    screenshot("audit-list")
    assert page.evaluate(NOT_FITTING) == []
    assert event.at.strftime("%Y-%m-%d %H:%M:%S UTC") in page.text_content("#result_list")
    cell = page.locator("#result_list .crl-reason").bounding_box()
    when = page.locator("#result_list .field-when_listed span").bounding_box()
    assert when["height"] < 30 and cell["height"] > 3 * when["height"]  # the time on one line, the reason wrapped
    assert "none \u2192 v1" in page.text_content("#result_list")
    policy = PolicyModel.objects.get(curriculum=curriculum, version=event.to_version)
    page.goto(f"{base}/admin/curriculum/policymodel/{policy.pk}/history/")
    assert "Force-promoted: now the active version" in page.text_content("#content-main")


def test_a_running_protocol_evaluation_is_on_the_worker_panel_and_its_page(logged_in, make_curriculum, make_policy,
                                                                           screenshot):
    from training.models import ProtocolEvaluationJob

    page, base = logged_in
    curriculum = make_curriculum("algebra", concepts=3)
    policy = make_policy(curriculum, recall=0.5)
    now = timezone.now()
    job = ProtocolEvaluationJob.objects.create(
        curriculum=curriculum, policy=policy, protocol=curriculum.protocol.to_dict(), status="running",
        worker="w1@host", started_at=now, heartbeat_at=now, phase="evaluating", step=4, steps=8)
    page.goto(f"{base}/admin/")
    page.wait_for_selector("#worker-health")
    assert "algebra v1 evaluation" in page.text_content("#worker-health")
    page.click(f"#worker-health a[href$='/protocolevaluationjob/{job.pk}/change/']")
    page.wait_for_selector("#job-progress")
    assert "stage 2 of 3: evaluating, 50% (4 / 8)" in page.text_content("#job-bar-label")
    assert page.evaluate(NOT_FITTING) == []
    screenshot("protocol-evaluation-job")
