"""Promotions, rollbacks and review imports in the admin's object history (``LogEntry``, curriculum/history.py),
and the audit list of promotions: times to the second with their zone, a long reason wrapped."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.urls import reverse

from curriculum.history import record_change
from curriculum.models import Curriculum, PolicyModel, PromotionEvent
from curriculum.services import promote_policy, rollback_policy

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent / "reviews" / "importers" / "fixtures"


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(username="ops", email="", password="pw-ops-1")


def history(obj) -> list[str]:
    content_type = ContentType.objects.get_for_model(type(obj))
    return list(LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk))
                .order_by("action_time", "pk").values_list("change_message", flat=True))


def test_record_change_writes_one_entry_per_object_and_nothing_without_a_user(operator, make_curriculum):
    curriculum = make_curriculum("algebra", concepts=2)
    written = record_change(actor=operator, objects=[curriculum], message="Something changed. Reason: why")
    assert [(e.user, e.action_flag, e.object_repr) for e in written] == [(operator, CHANGE, str(curriculum))]
    assert history(curriculum) == ["Something changed. Reason: why"]
    assert record_change(actor=None, objects=[curriculum], message="x") == []
    assert LogEntry.objects.count() == 1


def test_promotion_and_rollback_are_in_the_history_of_the_curriculum_and_both_versions(operator, make_curriculum,
                                                                                      make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    v1, v2 = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.6)
    promote_policy(policy=v1, actor=operator, reason="first version")
    promote_policy(policy=v2, actor=operator, reason="better recall")
    rollback_policy(curriculum=curriculum, actor=operator, reason="teachers complained")
    assert history(curriculum) == [
        "Promoted: v1 (none active before). Reason: first version",
        "Promoted: v1 \u2192 v2. Reason: better recall",
        "Rolled back: v2 \u2192 v1. Reason: teachers complained",
    ]
    assert history(v2) == ["Promoted: now the active version (v1 \u2192 v2). Reason: better recall",
                           "Retired: rolled back to v1. Reason: teachers complained"]
    assert history(v1)[1] == "Retired: promoted to v2. Reason: better recall"


def test_the_versions_history_page_shows_the_promotion(client, operator, make_curriculum, make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    policy = make_policy(curriculum, recall=0.5)
    promote_policy(policy=policy, actor=operator, reason="first version", force=True)
    client.force_login(operator)
    page = client.get(reverse("admin:curriculum_policymodel_history", args=[policy.pk])).content.decode()
    assert "Force-promoted: now the active version" in page and "first version" in page
    page = client.get(reverse("admin:curriculum_curriculum_history", args=[curriculum.pk])).content.decode()
    assert "Force-promoted: v1 (none active before)" in page


def test_a_promotion_without_a_user_writes_no_history(make_curriculum, make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    promote_policy(policy=make_policy(curriculum, recall=0.5), reason="from the command line")
    assert not LogEntry.objects.exists() and PromotionEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_import_by_an_operator_is_in_the_curriculums_history_a_dry_run_is_not(operator, make_curriculum,
                                                                                 monkeypatch, settings):
    from training import jobs, tasks
    from training.jobs import lifecycle

    settings.CRL_JOB_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: True)
    curriculum = make_curriculum("logs", concepts=1)
    data = (FIXTURES / "fsrs_reviews.csv").read_bytes()
    for dry_run in (True, False):
        upload = jobs.store_upload(fileobj=ContentFile(data), filename="fsrs_reviews.csv")
        job = jobs.launch_review_import(curriculum=curriculum, upload=upload, filename="fsrs_reviews.csv",
                                        size=len(data), learner="ana", dry_run=dry_run, created_by=operator)
        tasks.run_review_import(job.pk)
    entries = history(Curriculum.objects.get(pk=curriculum.pk))
    assert entries == [f"Imported fsrs_reviews.csv (fsrs, review import job #{job.pk}): 8 review(s) stored, "
                       f"0 already stored, 0 skipped; 1 learner(s), 3 new concept(s)."]


def test_the_audit_list_shows_times_to_the_second_with_zone_and_wraps_the_reason(client, operator, make_curriculum,
                                                                                make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    reason = "x" * 400  # one unbroken word: it must still wrap
    event = promote_policy(policy=make_policy(curriculum, recall=0.5), actor=operator, reason=reason, force=True)
    client.force_login(operator)
    page = client.get(reverse("admin:curriculum_promotionevent_changelist")).content.decode()
    assert event.at.strftime("%Y-%m-%d %H:%M:%S UTC") in page
    cell = page[page.index('class="crl-reason"') - 5:page.index(reason)]
    assert "overflow-wrap: anywhere" in cell and "white-space: pre-wrap" in cell
    orchestrator = client.get(reverse("curriculum:orchestrator")).content.decode()
    assert event.at.strftime("%Y-%m-%d %H:%M:%S UTC") in orchestrator and 'class="reason"' in orchestrator
