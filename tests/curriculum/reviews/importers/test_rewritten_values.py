"""Issue 25 on files: numbers a spreadsheet rewrote are refused, not read as if exact."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from curriculum.models import ReviewLog
from curriculum.reviews.importers.csvstream import spreadsheet_rewritten
from curriculum.reviews.importers.service import ImportFileError, import_review_file

ANKI = "id,cid,usn,ease,ivl,lastIvl,factor,time,type\n"
FSRS = "card_id,review_time,review_rating,review_duration\n"
HLR = ("p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,history_seen,"
       "history_correct,session_seen,session_correct\n")


def run(text: str, *, learner: str | None = "ana"):
    return import_review_file(fileobj=io.BytesIO(text.encode()), filename="revlog.csv", curriculum_key="logs",
                              learner=learner)


# An Anki revlog opened in Excel and saved as CSV: 13-digit ids become 3 significant digits.
EXCEL_ANKI = (ANKI
              + "1.69E+12,1.69E+12,-1,3,1,0,2500,5210,1\n"
              + "1.69E+12,1.69E+12,-1,1,0,1,2500,8001,2\n")


@pytest.mark.django_db
def test_an_anki_revlog_saved_by_excel_is_refused_naming_line_and_column():
    with pytest.raises(ImportFileError) as caught:
        run(EXCEL_ANKI)

    message = str(caught.value)
    assert message.startswith("revlog.csv, line 2, column ")
    assert "'1.69E+12': a spreadsheet rewrote this number" in message
    assert not ReviewLog.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("row, column", [
    ("1.69e12,1690000000001,-1,3,1,0,2500,10,1", "id"),
    ("1690000000000.0,1690000000001,-1,3,1,0,2500,10,1", "id"),
    ('"1,690,000,000,000",1690000000001,-1,3,1,0,2500,10,1', "id"),
    ("1690000000000,1.690000000001E+12,-1,3,1,0,2500,10,1", "cid"),
    ("1690000000000,1690000000001.0,-1,3,1,0,2500,10,1", "cid"),
    ('1690000000000,"1 690 000 000 001",-1,3,1,0,2500,10,1', "cid"),
])
def test_each_rewritten_form_in_an_anki_id_column_is_refused(row, column):
    with pytest.raises(ImportFileError, match=f"revlog.csv, line 3, column {column}: expected .* written in digits"):
        run(ANKI + "1690000000000,1690000000001,-1,3,1,0,2500,10,1\n" + row + "\n")


@pytest.mark.django_db
@pytest.mark.parametrize("row, column", [
    ("1.69E+12,1690000000000,3,10", "card_id"),
    ("7,1.69E+12,3,10", "review_time"),
    ("7,1690000000000.0,3,10", "review_time"),
])
def test_rewritten_fsrs_ids_and_millisecond_times_are_refused(row, column):
    with pytest.raises(ImportFileError, match=f"revlog.csv, line 2, column {column}: .*a spreadsheet rewrote"):
        run(FSRS + row + "\n")


@pytest.mark.django_db
def test_exact_ids_and_times_keep_every_digit():
    result = run(ANKI + "1690000000123,1690000000001,-1,3,1,0,2500,10,1\n"
                 + "1690000000124,1690000000002,-1,3,1,0,2500,10.0,1\n")  # a pandas-written duration: exact

    assert result.created == 2
    assert sorted(ReviewLog.objects.values_list("concept__key", "reviewed_at", "response_time_ms")) == [
        ("1690000000001", dt.datetime(2023, 7, 22, 4, 26, 40, 123000, tzinfo=dt.timezone.utc), 10),
        ("1690000000002", dt.datetime(2023, 7, 22, 4, 26, 40, 124000, tzinfo=dt.timezone.utc), 10),
    ]


@pytest.mark.django_db
def test_hlr_seconds_with_a_decimal_fraction_are_read_exactly():
    run(HLR + "1.0,1362076081.123,27649635,u:FO,de,en,76390c13,lernt,2,1,2,2\n", learner=None)

    assert ReviewLog.objects.get().reviewed_at == dt.datetime(2013, 2, 28, 18, 28, 1, 123000, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("value, rewritten", [
    ("1.69E+12", True), ("1,69E+12", True), ("1e12", True), ("1690000000000.0", True), ("1,690,000", True),
    ("1.690.000", True), ("1\u00a0690\u00a0000", True), ("1'690'000", True),
    ("1690000000000", False), ("76390c13", False), ("abc", False), ("12e4a", False), ("1,69", False),
])
def test_spreadsheet_forms_are_told_from_ids(value, rewritten):
    assert spreadsheet_rewritten(value) is rewritten


NOTE = "2 reviews had a negative duration (clock went back): stored without a duration"


@pytest.mark.django_db
def test_a_negative_anki_duration_is_kept_without_a_duration_and_counted():
    result = run(ANKI + "1690000000000,1690000000001,-1,3,1,0,2500,5000,1\n"
                 + "1690000100000,1690000000001,-1,3,1,0,2500,-3599000,1\n"   # the clock went back an hour
                 + "1690000200000,1690000000002,-1,1,0,1,2500,-12,2\n")

    assert (result.created, result.negative_durations, result.notes) == (3, 2, (NOTE,))
    assert sorted(ReviewLog.objects.values_list("response_time_ms", flat=True), key=str) == [5000, None, None]


@pytest.mark.django_db
def test_a_negative_fsrs_duration_is_counted_in_a_dry_run_too():
    result = import_review_file(fileobj=io.BytesIO((FSRS + "7,1690000000000,3,-5\n").encode()), filename="r.csv",
                                curriculum_key="logs", learner="ana", dry_run=True)

    # a dry run stores nothing: its note says what an import would do
    assert result.notes == ("1 review had a negative duration (clock went back): would be stored without a duration",)


@pytest.mark.django_db
def test_the_commands_dry_run_says_what_an_import_would_store_and_stores_nothing(tmp_path):
    from django.core.management import call_command

    path = tmp_path / "r.csv"
    path.write_text(FSRS + "7,1690000000000,3,-5\n8,1690000000000,3,1200\n")
    out = io.StringIO()

    call_command("import_reviewlogs", str(path), "--curriculum", "scratch", "--learner", "x", "--dry-run",
                 "--no-progress", stdout=out)

    text = out.getvalue()
    assert "1 review had a negative duration (clock went back): would be stored without a duration" in text
    assert "dry run, nothing stored" in text and "would add 2 new concepts" in text
    assert ": stored without" not in text
    assert not ReviewLog.objects.exists()


@pytest.mark.django_db
def test_the_negative_duration_note_counts_only_the_reviews_stored():
    text = FSRS + "7,1690000000000,3,-5\n7,1690000000000,3,-5\n"  # one review, twice

    first = run(text)
    again = run(text)

    assert (first.created, first.negative_durations) == (1, 1)
    assert first.notes == ("1 review had a negative duration (clock went back): stored without a duration",)
    assert (again.created, again.duplicates, again.negative_durations, again.notes) == (0, 2, 0, ())


@pytest.mark.django_db
def test_a_duration_too_long_is_still_refused():
    with pytest.raises(ImportFileError, match="line 2, column time: expected at most 2147483647 milliseconds"):
        run(ANKI + "1690000000000,1690000000001,-1,3,1,0,2500,2147483648,1\n")


@pytest.mark.django_db
def test_the_command_says_how_many_durations_were_negative(tmp_path):
    from django.core.management import call_command

    path = tmp_path / "revlog.csv"
    path.write_text(ANKI + "1690000000000,1690000000001,-1,3,1,0,2500,-1,1\n1690000100000,1690000000001,-1,3,1,0,2500,-2,1\n")
    out = io.StringIO()

    call_command("import_reviewlogs", str(path), "--curriculum", "logs", "--learner", "ana", "--no-progress", stdout=out)

    assert "2 reviews created" in out.getvalue() and NOTE in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_import_job_page_says_how_many_durations_were_negative(client, import_through_admin):
    from django.urls import reverse

    job, url = import_through_admin("revlog.csv", (ANKI + "1690000000000,1690000000001,-1,3,1,0,2500,-1,1\n"
                                                   "1690000100000,1690000000001,-1,3,1,0,2500,-2,1\n").encode())

    assert job.status == "succeeded" and job.result["negative_durations"] == 2
    assert NOTE in client.get(url).content.decode()
    assert NOTE in client.get(reverse("admin:training_reviewimportjob_change", args=[job.pk])).content.decode()
