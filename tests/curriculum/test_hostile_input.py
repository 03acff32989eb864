"""Hostile input never reaches a 500 or a storage path: a NUL byte in a URL path or query, curriculum keys such as
'../evil' at every entry point (one rule: curriculum.reviews.fields.check_curriculum_key), and an import job's error
shown as the operator's message, its traceback kept in the worker's log."""
from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from curriculum.models import Curriculum, ReviewLog
from curriculum.reviews.importers.csvstream import ImportFileError
from curriculum.reviews.importers.service import import_review_file
from curriculum.reviews.store import record_reviews
from curriculum.reviews.validation import ReviewValidationError
from curriculum.services import ensure_curriculum

KEY_RULE = "expected a curriculum key of 1 to 100 letters, digits, '-' or '_'"
pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=3)


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("operator", password="x")


def api_get(path: str, user) -> tuple[int, dict]:
    from rest_framework.authtoken.models import Token

    client = Client(raise_request_exception=False)
    response = client.get(path, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return response.status_code, json.loads(response.content)


@pytest.mark.parametrize("key", ["demo%00", "demo%00x", "..", "demo%0A"])
def test_a_policy_path_with_a_key_no_curriculum_can_have_is_a_404_naming_the_key(operator, demo, key):
    status, body = api_get(f"/api/v1/curricula/{key}/policy", operator)

    assert status == 404
    assert body["error"]["fields"][0]["field"] == "key" and KEY_RULE in body["error"]["message"]


def test_a_review_whose_curriculum_holds_a_nul_byte_is_refused_naming_the_field(demo):
    items = [{"curriculum": "demo\x00", "learner": "u1", "concept": "c0", "correct": True,
              "reviewed_at": "2026-01-05T09:00:00Z"}]
    with pytest.raises(ReviewValidationError) as refused:
        record_reviews(items=items)

    assert refused.value.errors == [{"index": 0, "field": "curriculum", "message": refused.value.errors[0]["message"]}]
    assert KEY_RULE in refused.value.errors[0]["message"] and not ReviewLog.objects.exists()


def test_the_export_of_a_learner_id_with_a_nul_byte_says_what_was_expected(client, operator, demo):
    client.force_login(operator)
    url = reverse("admin:curriculum_curriculum_export_reviews", args=[demo.pk])

    response = client.get(url, {"learner": "ana\x00"})

    assert response.status_code == 302
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["export: learner: expected a learner id without control or bidirectional-override characters, "
                     "found U+0000"]


@pytest.mark.parametrize("object_id", ["abc", "1%00"])
def test_a_curriculum_page_with_an_id_that_is_no_number_is_a_404(operator, demo, object_id):
    client = Client(raise_request_exception=False)
    client.force_login(operator)

    for page in ("export-reviews.csv", "import-reviews/", "calibration/"):
        assert client.get(f"/admin/curriculum/curriculum/{object_id}/{page}").status_code == 404, page


def test_ensure_curriculum_refuses_a_key_that_is_not_one_and_stores_nothing():
    with pytest.raises(ValueError, match=KEY_RULE):
        ensure_curriculum(key="../evil", concept_keys=["c0", "c1"])
    assert not Curriculum.objects.exists()


def test_an_import_into_a_key_that_is_not_one_is_refused_before_reading_the_file(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("card_id,review_time,review_rating,review_duration\n1,1700000000000,3,10\n")

    with pytest.raises(ImportFileError, match=f"reviews.csv: curriculum: {KEY_RULE}, got '../evil'"):
        import_review_file(path=path, curriculum_key="../evil", learner="ana")
    assert not Curriculum.objects.exists()


def test_an_import_jobs_error_is_the_operators_message_and_its_traceback_stays_in_the_log(
        make_curriculum, caplog, monkeypatch):
    from django.core.files.base import ContentFile

    from training import jobs
    from training.jobs import lifecycle

    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: True)
    curriculum = make_curriculum("logs", concepts=1)
    stored = jobs.store_upload(fileobj=ContentFile(b"card_id,review_time\x00x,review_rating,review_duration\n"),
                               filename="nul-header.csv")
    job = jobs.launch_review_import(curriculum=curriculum, upload=stored, filename="nul-header.csv", learner="ana")

    with caplog.at_level(logging.ERROR):
        jobs.run_review_import(job_id=job.pk, worker="w1")

    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == "nul-header.csv, line 1, column 2: a NUL byte in the field: expected UTF-8 text"
    assert "Traceback" in caplog.text and "Traceback" not in job.error and ".py" not in job.error
