"""csvstream on files a reviewer found read wrong: the line an error names, the header's bound, separator and repeated
columns, the admin form's encoding check, and times whose UTC minute is outside the calendar."""
from __future__ import annotations

import io
import tracemalloc

import pytest

from curriculum.models import ReviewLog
from curriculum.reviews.importers.csvstream import HEAD_BYTES
from curriculum.reviews.importers.service import ImportFileError, check_file_head, import_review_file

FSRS = "card_id,review_rating,review_time,review_duration\n"


def run(data: str | bytes, *, learner: str = "ana"):
    data = data.encode() if isinstance(data, str) else data
    return import_review_file(fileobj=io.BytesIO(data), filename="log.csv", curriculum_key="logs", learner=learner)


def head_check(data: str | bytes):
    data = data.encode() if isinstance(data, str) else data
    return check_file_head(fileobj=io.BytesIO(data), filename="log.csv", learner="ana")


@pytest.mark.django_db
@pytest.mark.parametrize("when", ["0001-01-01T00:59:60+01:00", "9999-12-31T23:59:60-01:00"])
def test_a_leap_second_whose_utc_minute_is_in_year_0_or_10000_names_line_and_column(when):
    # its UTC minute was computed before the range check: an OverflowError out of the import (a failed job, a 500)
    with pytest.raises(ImportFileError) as caught:
        run(FSRS + "1,3,1700000000000,10\n" + f"1,3,{when},10\n")

    assert str(caught.value) == f"log.csv, line 3, column review_time: the date-time {when!r} is out of range in UTC"
    assert not ReviewLog.objects.exists()


@pytest.mark.parametrize("text, message", [
    ("\n\ncard_id,review_rating\n1,3\n", "log.csv, line 3: missing columns review_time, review_duration"),
    ("\n\ncard_id;review_rating;review_time;review_duration\n", "log.csv, line 3: the header is one column"),
    ("\r\n\r\nname,email\n", "log.csv, line 3: cannot tell the format from the header"),
])
def test_a_header_after_blank_lines_is_named_by_its_own_line(text, message):
    with pytest.raises(ImportFileError) as caught:
        head_check(text)

    assert str(caught.value).startswith(message)


@pytest.mark.django_db
def test_a_row_with_a_quoted_line_break_is_named_by_the_line_it_starts_on():
    text = FSRS + "1,3,1700000000000,10\n" + '"a\nb",7,1700000001000,10\n'  # the bad row: lines 3 and 4

    with pytest.raises(ImportFileError) as caught:
        run(text)

    assert str(caught.value) == "log.csv, line 3, column review_rating: expected 1-4, got '7'"


def test_a_header_of_millions_of_fields_is_refused_without_being_read_whole():
    data = FSRS.rstrip("\n").encode() + b"," * 2_000_000 + b"\n1,3,1700000000000,10\n"
    tracemalloc.start()
    try:
        with pytest.raises(ImportFileError) as caught:
            head_check(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert str(caught.value).startswith("log.csv, line 1: the header is longer than 65,536 characters; expected a "
                                        "header line with the columns of fsrs: card_id")
    assert peak < 2 << 20  # read whole, two million column names took ~85 times the header's 2 MB


def test_a_quoted_semicolon_separated_header_is_named_semicolon_separated():
    with pytest.raises(ImportFileError) as caught:
        head_check('"card_id";"review_rating";"review_time";"review_duration"\n"1";"3";"1700000000000";"5"\n')

    assert str(caught.value) == (
        "log.csv, line 1: the header '\"card_id\";\"review_rating\";\"review_time\";\"review_duration\"' is not "
        "comma-separated: the file looks semicolon-separated; expected comma-separated columns of fsrs: card_id, "
        "review_rating, review_time, review_duration (optional: review_state)")


@pytest.mark.django_db
def test_a_column_of_the_format_twice_in_the_header_is_refused_naming_it():
    text = FSRS.rstrip("\n") + ",review_rating\n1,3,1700000000000,10,1\n"  # which rating is the review's?

    with pytest.raises(ImportFileError) as caught:
        run(text)

    assert str(caught.value) == ("log.csv, line 1, column review_rating: the column review_rating is in the header "
                                 "twice (columns 2 and 5); expected each column once: remove or rename one")
    assert not ReviewLog.objects.exists()


@pytest.mark.django_db
def test_another_column_twice_is_not_read_and_the_file_imports():
    result = run(FSRS.rstrip("\n") + ",note,note\n1,3,1700000000000,10,a,b\n")

    assert result.created == 1


def test_the_head_check_refuses_latin_1_text_naming_its_line():
    data = FSRS.encode() + b"1,3,1700000000000,10\r\ncaf\xe9,3,1700000001000,10\r\n"

    with pytest.raises(ImportFileError) as caught:
        head_check(data)

    assert str(caught.value) == ("log.csv, line 3: not UTF-8 text (byte 0xE9): the file looks saved in another "
                                 "encoding (Latin-1 or Windows-1252?); save or export it as UTF-8 (CSV UTF-8)")


def test_the_head_check_accepts_a_character_cut_by_the_end_of_the_head():
    row = "caf\u00e9,3,1700000000000,10\n".encode()  # é is 2 bytes in UTF-8
    data = FSRS.encode()
    while len(data) + len(row) <= HEAD_BYTES:
        data += row
    data += b"x" * (HEAD_BYTES - len(data) - 4) + row  # the head ends between the two bytes of "é"
    assert data[HEAD_BYTES - 1:HEAD_BYTES + 1] == "\u00e9".encode()

    assert head_check(data).name == "fsrs"
