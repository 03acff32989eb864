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
    "2026-01-05T10:00:00+01", "2026-01-05T09:00Z", "2026-W02-1T09:00:00Z",  # hours-only offset, no seconds, week date
    "2026-005T09:00:00Z", "2026005T090000Z",  # ISO 8601 ordinal dates (day 5 of 2026), extended and basic
    "2026-01-05T08:00:00\u221201:00",  # ISO 8601's own minus sign, U+2212, in the offset
    "2026-01-04T24:00:00-09:00", "2026-01-04T24:00-09:00",  # ISO 8601's end of day: 00:00 of the next
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


@pytest.mark.django_db
@pytest.mark.parametrize("sent", ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5z", "2016-12-31T15:59:60-08:00",
                                  "20161231T235960Z"])
def test_a_leap_second_is_one_review_at_the_last_millisecond_of_the_day(api_client, make_curriculum, sent, settings):
    # RFC 3339 section 5.6 (time-second 60) and 5.7: the leap second at the end of 2016 in its forms
    make_curriculum("demo", concepts=1)
    body = {"curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True, "reviewed_at": sent}

    response = post(api_client, "/api/v1/reviews", body)

    assert response.status_code == 201, response.content
    assert ReviewLog.objects.get().reviewed_at == dt.datetime(2016, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc)
    again = {**body, "reviewed_at": "2016-12-31T23:59:60+00:00"}
    assert post(api_client, "/api/v1/reviews", again).json()["duplicates"] == 1


@pytest.mark.parametrize(("sent", "reason"), [
    ("2026-02-30T09:00:00Z", "day is out of range for month"),
    ("0000-01-05T09:00:00Z", "year 0 is out of range"),
    ("2026-13-01T09:00:00Z", "month must be in 1..12"),
    ("2026-02-01T09:00:00+25:00", "the zone's offset must be less than 24 hours"),
    ("2026-400T09:00Z", "no such day of the year"),
    ("20260230T090000Z", "day is out of range for month"),  # ISO 8601's basic form
    ("2026-02-01T09:00:00+10:75", "the zone's offset minutes must be 00 to 59"),  # Python reads it as +11:15
    ("2026-02-01T09:00:00+1075", "the zone's offset minutes must be 00 to 59"),
    ("9999-12-31T24:00Z", "past the year 9999"),  # was an OverflowError: a 500
])
def test_a_well_formed_time_that_does_not_exist_is_refused_naming_the_impossible_part(sent, reason):
    """Not "expected ... with a zone" for a time that has its zone: the client is told what cannot be."""
    with pytest.raises(ValueError) as caught:
        check_time(sent)
    message = str(caught.value)
    assert f"{sent!r} is not a date-time that exists: {reason}" in message and "with a zone" not in message


@pytest.mark.parametrize("sent", ["2016-12-31T12:59:60Z", "2026-01-05T23:59:60+05:45", "2026-01-05T24:00:01Z",
                                  "2026-366T09:00:00Z", "2026-000T09:00:00Z", "2026-01-05T24:30Z"])
def test_a_second_60_outside_a_utc_day_end_or_an_impossible_ordinal_day_is_refused(sent):
    with pytest.raises(ValueError, match="reviewed_at"):
        check_time(sent)


@pytest.mark.django_db
def test_a_recommendation_at_a_leap_second_is_answered(api_client, make_curriculum):
    make_curriculum("demo", concepts=2)

    response = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1",
                                                            "at": "2016-12-31T23:59:60Z"})

    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_ids_differ_by_case_as_their_code_points_do(api_client, make_curriculum):
    # NFC is the only normalisation: no standard makes an id case-insensitive, and a client's ids may be (base64)
    make_curriculum("demo", concepts=1)
    reviews = [{"curriculum": "demo", "learner": name, "concept": "c0", "correct": True, "reviewed_at": T0.isoformat()}
               for name in ("Ana", "ana")]

    assert post(api_client, "/api/v1/reviews", reviews).json() == {"created": 2, "duplicates": 0}
    assert sorted(Learner.objects.values_list("external_id", flat=True)) == ["Ana", "ana"]


@pytest.mark.django_db
def test_an_imported_file_reads_a_leap_second_and_iso_8601_forms(make_curriculum):
    fsrs = ("card_id,review_time,review_rating,review_duration\n"
            "w1,2016-12-31T23:59:60Z,3,10\n"
            "w1,2017-001T09:00:00Z,3,10\n"  # 1 January 2017, an ordinal date
            "w1,2017-01-01T24:00:00Z,3,10\n")

    result = import_review_file(fileobj=io.BytesIO(fsrs.encode()), filename="fsrs.csv", curriculum_key="logs",
                                learner="u1")

    assert result.created == 3
    assert sorted(ReviewLog.objects.values_list("reviewed_at", flat=True)) == [
        dt.datetime(2016, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc),
        dt.datetime(2017, 1, 1, 9, tzinfo=dt.timezone.utc), dt.datetime(2017, 1, 2, tzinfo=dt.timezone.utc)]


@pytest.mark.django_db
def test_concept_keys_from_code_and_the_admin_are_stored_in_nfc(admin_client):
    from django.urls import reverse

    from curriculum.services import ensure_curriculum

    deck = ensure_curriculum(key="deck", concept_keys=[DECOMPOSED + "-verb"])
    assert list(Concept.objects.values_list("key", flat=True)) == [COMPOSED + "-verb"]
    assert Learner.objects.create(external_id=DECOMPOSED).external_id == COMPOSED

    # the same name typed decomposed in the admin is the concept that exists: the form says so (no 500)
    response = admin_client.post(reverse("admin:curriculum_concept_add"), {
        "curriculum": deck.pk, "key": DECOMPOSED + "-verb", "name": "again", "position": "1"})
    assert response.status_code == 200
    assert "already exists" in str(response.context["adminform"].form.errors)
    admin_client.post(reverse("admin:curriculum_concept_add"), {
        "curriculum": deck.pk, "key": DECOMPOSED + "-noun", "name": "noun", "position": "1"})
    assert sorted(Concept.objects.values_list("key", flat=True)) == [COMPOSED + "-noun", COMPOSED + "-verb"]


@pytest.mark.django_db
def test_the_end_of_the_last_day_of_year_9999_is_a_400_not_a_500(api_client, make_curriculum):
    make_curriculum("demo", concepts=2)
    response = api_client.post("/api/v1/reviews", data=json.dumps({
        "curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True, "reviewed_at": "9999-12-31T24:00Z"}),
        content_type="application/json")
    assert response.status_code == 400
    assert "past the year 9999" in response.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("sent", ["0001-01-01T00:59:60+01:00", "9999-12-31T23:59:60-01:00"])
def test_a_leap_second_past_the_first_or_last_utc_year_is_a_400_naming_the_field_not_a_500(api_client, make_curriculum,
                                                                                           sent):
    # the leap second's UTC minute (year 0, year 10000) was computed before the range check: an OverflowError
    make_curriculum("demo", concepts=1)
    response = post(api_client, "/api/v1/reviews", {"curriculum": "demo", "learner": "u1", "concept": "c0",
                                                    "correct": True, "reviewed_at": sent})
    assert response.status_code == 400
    assert f"{sent!r} is out of range in UTC" in response.json()["error"]["message"]
    assert "reviewed_at" in json.dumps(response.json())
