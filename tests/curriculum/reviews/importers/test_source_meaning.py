"""Issue 13 on files: rows that are not memory events, bad bytes, units, and the same review by any route."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from curriculum.models import ReviewLog
from curriculum.reviews.importers.service import ImportFileError, import_review_file
from curriculum.reviews.store import record_reviews

ANKI = "id,cid,usn,ease,ivl,lastIvl,factor,time,type\n"
FSRS = "card_id,review_time,review_rating,review_duration\n"
HLR = ("p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,history_seen,"
       "history_correct,session_seen,session_correct\n")


def run(text: str | bytes, *, learner: str | None = "ana", name: str = "log.csv"):
    data = text.encode() if isinstance(text, str) else text
    return import_review_file(fileobj=io.BytesIO(data), filename=name, curriculum_key="logs", learner=learner)


@pytest.mark.django_db
def test_anki_filtered_deck_answers_without_rescheduling_are_skipped():
    result = run(ANKI + "1700000000000,1,-1,3,1,0,2500,1000,1\n1700000100000,1,-1,3,2,1,2500,1000,1\n"
                 "1700000200000,1,-1,1,0,0,0,1000,3\n1700000300000,1,-1,3,0,0,0,1000,3\n")

    assert (result.created, result.skipped) == (2, 2)


@pytest.mark.django_db
def test_anki_revlog_types_each_mean_what_anki_means():
    result = run(ANKI
                 + "1700000000000,1,-1,3,-600,0,0,1000,0\n"      # learn: a review
                 + "1700000100000,1,-1,3,1,-600,2500,1000,1\n"   # review: a review
                 + "1700000200000,1,-1,1,-600,1,2500,1000,2\n"   # relearn: a review
                 + "1700000300000,1,-1,3,5,1,2500,1000,3\n"      # filtered with rescheduling: a review
                 + "1700000400000,1,-1,0,7,5,2500,0,4\n"         # manual set-due-date: skipped
                 + "1700000500000,1,-1,0,0,0,0,0,5\n")           # rescheduled: skipped

    assert (result.created, result.skipped) == (4, 2)


@pytest.mark.django_db
def test_anki_rows_of_a_card_before_its_last_reset_are_not_its_memory():
    result = run(ANKI
                 + "1700000000000,1,-1,3,1,0,2500,1000,1\n"
                 + "1700000100000,2,-1,3,1,0,2500,1000,1\n"
                 + "1700000200000,1,-1,0,0,0,0,0,4\n"            # card 1 reset ("Forget")
                 + "1700000300000,1,-1,3,-600,0,0,1000,0\n")     # card 1 learnt again

    assert (result.created, result.skipped) == (3 - 1, 2)
    assert sorted(ReviewLog.objects.values_list("concept__key", "reviewed_at")) == [
        ("1", dt.datetime.fromtimestamp(1700000300, dt.timezone.utc)),
        ("2", dt.datetime.fromtimestamp(1700000100, dt.timezone.utc)),
    ]


@pytest.mark.django_db
def test_fsrs_manual_rows_are_skipped_not_refused():
    result = run(FSRS + "1,1700000000000,3,10\n1,1700000100000,0,0\n1,1700000200000,4,10\n")

    assert (result.created, result.skipped) == (2, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("text, where", [
    (FSRS + "1,1700000000000,3,10\n2\x00,1700000000000,3,10\n", "log.csv, line 3, column card_id: a NUL byte"),
    (HLR + "1.0,1362076081000,27649635,u:FO,de,en,76390c13,lernt,2,1,2,2\n", "log.csv, line 2, column timestamp"),
])
def test_bad_bytes_and_units_are_named(text, where):
    with pytest.raises(ImportFileError) as caught:
        run(text, learner=None if text.startswith("p_recall") else "ana")

    assert where in str(caught.value)
    assert not ReviewLog.objects.exists()


@pytest.mark.django_db
def test_hlr_times_in_milliseconds_get_the_wrong_unit_hint():
    with pytest.raises(ImportFileError, match="expected seconds since 1970, from 1990 to now, got '1362076081000': wrong unit"):
        run(HLR + "1.0,1362076081000,27649635,u:FO,de,en,76390c13,lernt,2,1,2,2\n", learner=None)


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_file_is_refused_naming_the_encoding(encoding):
    with pytest.raises(ImportFileError, match=r"log.csv, line 1: the file is UTF-16 text; expected UTF-8"):
        run((FSRS + "1,1700000000000,3,10\n").encode(encoding))


@pytest.mark.django_db(transaction=True)
def test_a_nul_byte_in_an_upload_fails_its_import_job_naming_the_field_not_a_500(client, import_through_admin):
    job, url = import_through_admin("nul.csv", (FSRS + "1,1700000000000,3,1\x000\n").encode())

    assert job.status == "failed" and "nul.csv, line 2, column review_duration: a NUL byte" in job.error
    assert "nul.csv, line 2, column review_duration: a NUL byte" in client.get(url).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("when", ["2099-01-01T00:00:00Z", "4102444800000"])
def test_a_file_review_in_the_future_is_refused_naming_line_and_column(when):
    with pytest.raises(ImportFileError, match="log.csv, line 2, column review_time"):
        run(FSRS + f"1,{when},3,10\n")


@pytest.mark.django_db
def test_the_same_history_by_two_formats_and_the_api_is_stored_once(make_curriculum):
    make_curriculum(key="logs", concepts=0)
    first = run(FSRS + "7,1700000000123,3,10\n7,1700000100000,1,10\n")
    second = run(ANKI + "1700000000123,7,-1,3,1,0,2500,10,1\n1700000100000,7,-1,1,0,1,2500,10,2\n")
    api = record_reviews(items=[{"curriculum": "logs", "learner": "ana", "concept": "7", "correct": True, "grade": 3,
                                 "reviewed_at": "2023-11-14T22:13:20.123Z"}])

    assert (first.created, second.created, second.duplicates) == (2, 0, 2)
    assert (api.created, api.duplicates) == (0, 1)
    assert ReviewLog.objects.count() == 2
