"""Issue 25: identifiers and times as their standards define them, at the API and in imported files: learner and
concept ids compared in Unicode NFC (one learner however the client's platform encodes "José"), date-times in
every ISO 8601 / RFC 3339 form."""
import datetime as dt
import io
import json
import unicodedata

import pytest

from curriculum.models import Concept, Learner, ReviewLog
from curriculum.reviews.importers.service import import_review_file
from curriculum.reviews.validation import check_time

COMPOSED = unicodedata.normalize("NFC", "José")  # é as one code point, U+00E9 (Windows, most keyboards)
DECOMPOSED = unicodedata.normalize("NFD", "José")  # e + U+0301 COMBINING ACUTE ACCENT (macOS file names)
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_the_two_encodings_differ_as_strings():
    assert COMPOSED != DECOMPOSED and len(DECOMPOSED) == len(COMPOSED) + 1


@pytest.mark.django_db
def test_one_learner_however_the_client_encodes_the_name(api_client, db):
    from curriculum.services import ensure_curriculum

    ensure_curriculum(key="demo", name="Demo", concept_keys=[COMPOSED + "-verb"])
    first = {"curriculum": "demo", "learner": COMPOSED, "concept": DECOMPOSED + "-verb", "correct": True,
             "reviewed_at": T0.isoformat()}
    second = {**first, "learner": DECOMPOSED, "concept": COMPOSED + "-verb", "reviewed_at": (T0 + dt.timedelta(days=1)).isoformat()}

    assert post(api_client, "/api/v1/reviews", [first, second]).json() == {"created": 2, "duplicates": 0}
    assert post(api_client, "/api/v1/reviews", second).json() == {"created": 0, "duplicates": 1}

    assert list(Learner.objects.values_list("external_id", flat=True)) == [COMPOSED]
    assert set(ReviewLog.objects.values_list("learner__external_id", "concept__key")) == {(COMPOSED, COMPOSED + "-verb")}
    answer = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": DECOMPOSED,
                                                          "candidates": [DECOMPOSED + "-verb"]})
    assert answer.status_code == 200, answer.content
    assert answer.json()["concept"] == COMPOSED + "-verb"


@pytest.mark.django_db
@pytest.mark.parametrize("sent", [
    "2026-01-05T09:00:00Z", "2026-01-05T09:00:00+00:00", "2026-01-05t09:00:00z", "2026-01-05 09:00:00Z",
    "2026-01-05T09:00:00.000000000001Z", "2026-01-05T09:00:00.0009999999+00:00", "2026-01-05T10:00:00+01:00",
    "2026-01-05T10:00:00+0100", "20260105T090000Z", "2026-01-05T09:00:00,0Z", "2026-01-05T09:00:00-00:00",
])
def test_every_rfc_3339_and_iso_8601_form_of_one_instant_is_one_review(api_client, make_curriculum, sent):
    make_curriculum("demo", concepts=1)
    body = {"curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True, "reviewed_at": sent}

    response = post(api_client, "/api/v1/reviews", body)

    assert response.status_code == 201, response.content
    assert ReviewLog.objects.get().reviewed_at == T0  # to the millisecond, as a review's identity is
    assert post(api_client, "/api/v1/reviews", {**body, "reviewed_at": "2026-01-05T09:00:00Z"}).json()["duplicates"] == 1


@pytest.mark.django_db
def test_a_recommendations_time_takes_the_rfc_3339_forms_too(api_client, make_curriculum):
    make_curriculum("demo", concepts=2)

    response = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1",
                                                            "at": "2026-01-05t09:00:00.123456789z"})

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("sent", ["2026-01-05T09:00:00", "2026-01-05T25:00:00Z", "yesterday"])
def test_a_time_without_a_zone_or_that_is_no_time_is_still_refused(sent):
    with pytest.raises(ValueError):
        check_time(sent)


@pytest.mark.django_db
def test_an_imported_file_names_one_learner_and_one_concept_however_encoded(make_curriculum):
    hlr = ("p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,history_seen,"
           "history_correct,session_seen,session_correct\n"
           f"1.0,1362076081,0,{COMPOSED},de,en,{COMPOSED}-w,w,1,1,1,1\n"
           f"1.0,1362076181,0,{DECOMPOSED},de,en,{DECOMPOSED}-w,w,1,1,1,1\n")
    fsrs = f"card_id,review_time,review_rating,review_duration\n{DECOMPOSED}-w,2013-03-01t00:00:00.5z,3,10\n"

    first = import_review_file(fileobj=io.BytesIO(hlr.encode()), filename="hlr.csv", curriculum_key="logs")
    second = import_review_file(fileobj=io.BytesIO(fsrs.encode()), filename="fsrs.csv", curriculum_key="logs",
                                learner=DECOMPOSED)

    assert (first.learners, first.concepts_created, first.created) == (1, 1, 2)
    assert (second.concepts_created, second.created) == (0, 1)
    assert list(Learner.objects.values_list("external_id", flat=True)) == [COMPOSED]
    assert list(Concept.objects.values_list("key", flat=True)) == [COMPOSED + "-w"]
