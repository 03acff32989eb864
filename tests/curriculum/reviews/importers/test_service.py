"""curriculum.reviews.importers.service: each format's mapping, all-or-nothing on a bad row, idempotent re-import, detection."""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from curriculum.reviews.importers.service import ImportFileError, detect_format, import_review_file
from curriculum.reviews.store import record_reviews
from curriculum.models import Concept, Curriculum, Learner, PolicyModel, ReviewLog

FIXTURES = Path(__file__).parent / "fixtures"
UTC = dt.timezone.utc


def reviews(curriculum: str = "logs") -> list[ReviewLog]:
    return list(
        ReviewLog.objects.filter(curriculum__key=curriculum).select_related("learner", "concept").order_by("reviewed_at", "id")
    )


@pytest.mark.django_db
def test_fsrs_file_imports_every_review_with_grade_time_and_duration():
    result = import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", learner="ana")

    assert (result.format, result.rows, result.created, result.duplicates, result.skipped) == ("fsrs", 8, 8, 0, 0)
    assert (result.learners, result.concepts_created) == (1, 3)
    rows = reviews()
    assert [r.concept.key for r in rows] == ["101", "102", "103", "102", "101", "103", "102", "101"]
    assert [r.grade for r in rows] == [3, 1, 4, 3, 3, 2, 1, 4]
    assert [r.correct for r in rows] == [True, False, True, True, True, True, False, True]
    assert rows[0].reviewed_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert rows[5].reviewed_at == dt.datetime(2023, 11, 16, 8, 0, tzinfo=UTC)  # ISO 8601 in the same column
    assert [r.response_time_ms for r in rows[:3]] == [5200, 9100, 3000] and rows[5].response_time_ms is None
    assert {r.learner.external_id for r in rows} == {"ana"}
    assert {(r.source, r.batch) for r in rows} == {("imported", result.batch)} and result.batch.startswith("import:")


@pytest.mark.django_db
def test_anki_revlog_maps_ease_and_skips_rows_that_are_not_answers():
    result = import_review_file(path=FIXTURES / "anki_revlog.csv", curriculum_key="logs", learner="ben")

    assert (result.format, result.rows, result.created, result.skipped, result.concepts_created) == ("anki", 6, 5, 1, 2)
    rows = reviews()
    assert [(r.concept.key, r.grade, r.correct) for r in rows] == [
        ("1690000000001", 3, True), ("1690000000002", 1, False), ("1690000000002", 3, True),
        ("1690000000001", 3, True), ("1690000000002", 4, True),
    ]
    assert rows[0].reviewed_at == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert rows[1].response_time_ms == 12000


@pytest.mark.django_db
def test_hlr_session_becomes_one_review_correct_when_at_least_half_right():
    result = import_review_file(path=FIXTURES / "hlr_traces.csv", curriculum_key="logs")

    assert (result.format, result.rows, result.created, result.learners, result.concepts_created) == ("hlr", 5, 5, 2, 3)
    rows = reviews()
    # 2/2 right, 1/2 right (half: correct), 1/1, 0/1, 3/4
    assert [r.correct for r in rows] == [True, True, True, False, True]
    assert [r.learner.external_id for r in rows] == ["u:FO", "u:FO", "u:FO", "u:dDwF", "u:dDwF"]
    assert {r.grade for r in rows} == {None}
    assert rows[0].reviewed_at == dt.datetime.fromtimestamp(1362076081, UTC)
    concept = Concept.objects.get(curriculum__key="logs", key="76390c1350a8dac31186187e2fe1e178")
    assert concept.name == "lernt/lernen<vblex><pri><p3><sg>" and concept.position == 0


@pytest.mark.django_db
def test_concepts_are_appended_in_first_seen_order_after_existing_ones(make_curriculum):
    make_curriculum(key="logs", concepts=2)

    import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", learner="ana")

    assert list(Concept.objects.filter(curriculum__key="logs").order_by("position").values_list("key", "position")) == [
        ("c0", 0), ("c1", 1), ("101", 2), ("102", 3), ("103", 4),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("fixture, learner", [("fsrs_reviews.csv", "ana"), ("anki_revlog.csv", "ben"), ("hlr_traces.csv", None)])
def test_reimporting_the_same_file_adds_nothing(fixture, learner):
    first = import_review_file(path=FIXTURES / fixture, curriculum_key="logs", learner=learner)
    again = import_review_file(path=FIXTURES / fixture, curriculum_key="logs", learner=learner)

    assert again.created == 0 and again.duplicates == first.created and again.batch == first.batch
    assert ReviewLog.objects.count() == first.created


@pytest.mark.django_db
def test_the_same_file_for_another_learner_is_another_learners_history():
    import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", learner="ana")
    result = import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", learner="cy")

    assert result.created == 8 and result.concepts_created == 0
    assert ReviewLog.objects.filter(learner__external_id="cy").count() == 8


@pytest.mark.django_db
def test_a_review_twice_in_one_file_is_stored_once(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("card_id,review_time,review_rating,review_duration\n1,1700000000000,3,10\n1,1700000000000,3,10\n")

    result = import_review_file(path=path, curriculum_key="logs", learner="ana", batch_size=1)

    assert (result.created, result.duplicates) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["by time", "by card"])
def test_the_serving_state_is_rebuilt_once_per_learner_whatever_the_order(tmp_path, monkeypatch, make_curriculum, order):
    from curriculum import learner_states, selectors
    from curriculum.models import LearnerState

    lines = (FIXTURES / "fsrs_reviews.csv").read_text().splitlines()
    body = sorted(lines[1:], key=lambda line: line.split(",")[0]) if order == "by card" else lines[1:]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join([lines[0], *body]) + "\n")

    make_curriculum(key="logs", concepts=1)
    live_at = dt.datetime(2023, 11, 15, tzinfo=UTC)  # in the middle of the file's reviews
    record_reviews(items=[{"curriculum": "logs", "learner": "ana", "concept": "c0", "correct": True,
                                    "reviewed_at": live_at}])
    rebuilds = []
    real_history = learner_states.history
    monkeypatch.setattr(learner_states, "history", lambda **kw: rebuilds.append(kw) or real_history(**kw))

    import_review_file(path=path, curriculum_key="logs", learner="ana", batch_size=2)

    state = LearnerState.objects.get(learner__external_id="ana", curriculum__key="logs")
    assert state.review_count == 9 and state.newest_review_at == dt.datetime.fromtimestamp(1_700_300_000, UTC)
    assert len(rebuilds) == 1
    spec = selectors.serving_spec(curriculum_id=state.curriculum_id)
    rebuilt, _ = learner_states.state_from_history(
        real_history(learner_id=state.learner_id, curriculum_id=state.curriculum_id), spec=spec
    )
    assert state.data["state"] == rebuilt.to_dict(history_states=False)
    assert bytes(state.history_states) == rebuilt.history_state_bytes()


@pytest.mark.parametrize(
    "fixture, expected",
    [("fsrs_reviews.csv", "fsrs"), ("anki_revlog.csv", "anki"), ("hlr_traces.csv", "hlr"), ("fsrs_missing_column.csv", "fsrs")],
)
def test_format_is_detected_from_the_header(fixture, expected):
    header = (FIXTURES / fixture).read_text().splitlines()[0].split(",")

    assert detect_format(header).name == expected


def test_an_unrelated_header_is_no_format():
    assert detect_format(["name", "email", "id"]) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fixture, learner, message",
    [
        ("fsrs_bad_grade.csv", "ana", "fsrs_bad_grade.csv, line 4, column review_rating: expected 1-4, got '7'"),
        ("fsrs_bad_time.csv", "ana", "fsrs_bad_time.csv, line 3, column review_time: expected milliseconds since 1970 "
                                     "or an ISO 8601 date-time, got 'yesterday at noon'"),
        ("anki_time_in_seconds.csv", "ana", "anki_time_in_seconds.csv, line 2, column id: expected milliseconds since "
                                            "1970, from 1990 to now, got '1700000000' (1970-01-20): wrong unit?"),
        ("hlr_bad_session.csv", None, "hlr_bad_session.csv, line 3, column session_correct: expected 0-2, got '3'"),
        ("fsrs_missing_column.csv", "ana", "fsrs_missing_column.csv, line 1: missing column review_rating; expected the "
                                           "columns of fsrs: card_id, review_rating, review_time, review_duration"),
        ("fsrs_semicolon.csv", "ana", "fsrs_semicolon.csv, line 1: the header is one column "
                                      "'card_id;review_time;review_rating;review_duration': the file looks "
                                      "semicolon-separated; expected comma-separated columns of fsrs: card_id, "
                                      "review_rating, review_time, review_duration"),
    ],
)
def test_a_bad_file_imports_nothing_and_names_line_and_column(make_curriculum, fixture, learner, message):
    make_curriculum(key="logs", concepts=1)

    with pytest.raises(ImportFileError) as caught:
        # batch_size=1: rows before the bad one were already written, and must be rolled back
        import_review_file(path=FIXTURES / fixture, curriculum_key="logs", learner=learner, batch_size=1)

    assert message in str(caught.value)
    assert ReviewLog.objects.count() == 0 and Learner.objects.count() == 0
    assert list(Concept.objects.values_list("key", flat=True)) == ["c0"]


@pytest.mark.django_db
def test_a_failed_import_does_not_leave_a_new_curriculum_behind():
    with pytest.raises(ImportFileError):
        import_review_file(path=FIXTURES / "fsrs_bad_grade.csv", curriculum_key="fresh", learner="ana", batch_size=1)

    assert not Curriculum.objects.filter(key="fresh").exists()


HEADER = "card_id,review_time,review_rating,review_duration\n"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text, message",
    [
        (HEADER + "1,1700000000000,3,10\n2,1700000000000,3\n",
         "bad.csv, line 3: expected 4 comma-separated fields as in the header, got 3"),
        (HEADER + "1,2024-01-01T10:00:00,3,10\n",
         "bad.csv, line 2, column review_time: the date-time '2024-01-01T10:00:00' has no zone"),
        ("name,email\nx,y\n", "bad.csv, line 1: cannot tell the format from the header 'name, email'; expected the "
                               "columns of fsrs: card_id"),
        ("", "bad.csv, line 1: the file is empty; expected a header line with the columns of fsrs: card_id"),
        (HEADER + "1,2024-13-45T10:00:00Z,3,10\n",
         "bad.csv, line 2, column review_time: '2024-13-45T10:00:00Z' is not a date-time that exists: month must be "
         "in 1..12"),
        (HEADER.encode() + b"1,1700000000000,3,10\ncaf\xe9,1700000000000,3,10\n",
         "bad.csv, line 3, column card_id: not UTF-8 text"),
        (HEADER + '1,1700000000000,3,10\n"2,1700000000000,3,10\n', "bad.csv, line 3: not valid CSV: unexpected end of data"),
    ],
    ids=["missing field", "time without zone", "unknown header", "empty", "impossible date", "not utf-8", "open quote"],
)
def test_a_bad_file_is_refused_with_what_was_expected(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())

    with pytest.raises(ImportFileError) as caught:
        import_review_file(path=path, curriculum_key="logs", learner="ana")

    assert message in str(caught.value)
    assert ReviewLog.objects.count() == 0


@pytest.mark.django_db
def test_a_review_the_one_validation_refuses_names_the_column_its_field_came_from(tmp_path):
    # The row reads well (every column parses), but its learner id breaks a review rule (validation.py).
    header = ("p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,history_seen,"
              "history_correct,session_seen,session_correct\n")
    path = tmp_path / "traces.csv"
    path.write_text(header + "1.0,1362076081,27649635,u\u202eX,de,en,lex1,word,6,4,2,2\n", encoding="utf-8")

    with pytest.raises(ImportFileError) as caught:
        import_review_file(path=path, curriculum_key="logs")

    assert str(caught.value) == ("traces.csv, line 2, column user_id: expected a learner id without control or "
                                 "bidirectional-override characters, found U+202E")
    assert ReviewLog.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("fixture", ["fsrs_reviews.csv", "anki_revlog.csv"])
def test_a_format_without_a_learner_column_needs_a_learner(fixture):
    with pytest.raises(ImportFileError, match=r"holds one learner's reviews and has no learner column: name the learner whose reviews "
                                            r"they are \(--learner ID\)"):
        import_review_file(path=FIXTURES / fixture, curriculum_key="logs")
    assert ReviewLog.objects.count() == 0


@pytest.mark.django_db
def test_a_format_with_a_learner_column_refuses_a_learner():
    with pytest.raises(ImportFileError, match="names its learners in the user_id column"):
        import_review_file(path=FIXTURES / "hlr_traces.csv", curriculum_key="logs", learner="ana")


@pytest.mark.django_db
def test_a_named_format_that_does_not_match_the_header_names_the_missing_columns():
    with pytest.raises(ImportFileError, match="line 1: missing columns id, cid, usn, ease"):
        import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", format="anki", learner="ana")


@pytest.mark.django_db
def test_a_stream_without_a_file_behind_it_imports_and_reports_progress():
    data = (FIXTURES / "fsrs_reviews.csv").read_bytes()
    seen: list[tuple[str, int, int | None]] = []

    result = import_review_file(
        fileobj=io.BytesIO(data), filename="upload.csv", curriculum_key="logs", learner="ana", batch_size=3,
        on_progress=lambda phase, done, total: seen.append((phase, done, total)),
    )

    assert result.created == 8
    for phase in ("validating", "storing"):
        done = [d for p, d, _ in seen if p == phase]
        assert done and done[-1] == len(data) and done == sorted(done)
    assert [p for p, _, _ in seen].index("storing") > max(i for i, (p, _, _) in enumerate(seen) if p == "validating")


@pytest.mark.django_db
def test_a_dry_run_counts_and_names_new_concepts_and_stores_nothing():
    result = import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", learner="ana", dry_run=True)

    assert result.dry_run and result.rows >= 8 and result.created == 0 and result.learners == 1
    assert result.concepts_created == len(result.new_concepts) > 0
    assert not ReviewLog.objects.exists() and not Curriculum.objects.filter(key="logs").exists()
    real = import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="logs", learner="ana")
    assert real.new_concepts == result.new_concepts and real.created == 8 and real.skipped == result.skipped
    assert list(Concept.objects.filter(curriculum__key="logs").order_by("position").values_list("key", flat=True)) == list(result.new_concepts)


@pytest.mark.django_db
def test_the_command_imports_and_refuses_a_bad_file_naming_the_line():
    out = io.StringIO()
    call_command("import_reviewlogs", str(FIXTURES / "fsrs_reviews.csv"), "--curriculum", "logs", "--learner", "ana",
                 "--no-progress", stdout=out)
    assert "8 reviews created, 0 duplicates" in out.getvalue()
    assert "; 1 learner, " in out.getvalue()  # one learner, not "1 learners"

    with pytest.raises(CommandError, match="line 4, column review_rating: expected 1-4, got '7'.*nothing was imported"):
        call_command("import_reviewlogs", str(FIXTURES / "fsrs_bad_grade.csv"), "--curriculum", "logs",
                     "--learner", "ana", "--no-progress")
    assert ReviewLog.objects.count() == 8


@pytest.mark.django_db
def test_the_command_needs_a_learner_for_an_anki_file():
    with pytest.raises(CommandError, match="anki file holds one learner's reviews"):
        call_command("import_reviewlogs", str(FIXTURES / "anki_revlog.csv"), "--curriculum", "logs", "--no-progress")


@pytest.mark.django_db(transaction=True)  # the extraction job commits its status as a worker does
@pytest.mark.slow
@pytest.mark.trains
def test_a_curriculum_of_1500_concepts_and_15000_reviews_imports_extracts_trains_evaluates_and_serves(tmp_path):
    from curriculum.serving import recommend
    from training import jobs
    from training.models import TrajectoryExtractionJob

    path = tmp_path / "large.csv"
    with path.open("w") as fh:
        fh.write("card_id,review_time,review_rating,review_duration\n")
        for i in range(15_000):
            fh.write(f"card{i % 1500},{1_700_000_000_000 + 30_000 * i},{1 + i % 4},{1000 + i}\n")

    result = import_review_file(path=path, curriculum_key="big", learner="ana")

    assert (result.created, result.concepts_created) == (15_000, 1500)
    positions = Concept.objects.filter(curriculum__key="big").order_by("position")
    assert positions.count() == 1500 and positions.last().position == 1499 and positions.first().key == "card0"

    # extract: the dataset's dimensions come from the curriculum
    job = jobs.launch_trajectory_extraction(curriculum=positions.first().curriculum)
    jobs.run_trajectory_extraction(job_id=job.pk)
    job = TrajectoryExtractionJob.objects.get(pk=job.pk)
    assert job.status == "succeeded" and job.statistics["steps"] == 15_000 and job.statistics["state_dim"] == 6000

    # train, evaluate (on simulated students of 1500 concepts) and serve
    out = io.StringIO()
    call_command("train_crl_policy", "--from-db", "--curriculum", "big", "--epochs", "1", "--batch_size", "8",
                 "--eval_students", "2", "--interactions", "20", "--no_cuda", "--no-progress", "--promote", "--force", "--reason", "1 epoch: the gate's below-random rule",
                 "--output_dir", str(tmp_path / "out"), stdout=out)
    policy = PolicyModel.objects.get(curriculum__key="big")
    assert (policy.config["action_dim"], policy.config["state_dim"]) == (1500, 6000)
    assert set(policy.metrics["results"]) == {"dt", "random", "round_robin", "leitner", "lowest_recall", "oracle",
                                                   "planner"}
    answer = recommend(curriculum="big", learner="ana", candidates=["card7", "card1499"])
    assert answer.strategy == "policy" and answer.policy_version == 1 and answer.concept in {"card7", "card1499"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_into_one_curriculum_keep_concept_positions_dense():
    import threading

    from django.db import connection

    errors: list[BaseException] = []

    def run(learner: str) -> None:
        try:
            import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="shared", learner=learner, batch_size=2)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(f"learner{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert list(Concept.objects.filter(curriculum__key="shared").order_by("position").values_list("key", "position")) == [
        ("101", 0), ("102", 1), ("103", 2),
    ]
    assert ReviewLog.objects.filter(curriculum__key="shared").count() == 24


@pytest.mark.django_db
@pytest.mark.slow
@pytest.mark.trains
def test_an_imported_log_trains_a_policy_that_serves_a_recommendation(tmp_path):
    from curriculum.serving import recommend

    import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key="roundtrip", learner="ana")
    import_review_file(path=FIXTURES / "anki_revlog.csv", curriculum_key="roundtrip", learner="ben")

    call_command(
        "train_crl_policy", "--from-db", "--curriculum", "roundtrip", "--epochs", "1", "--batch_size", "4",
        "--eval_students", "4", "--no_cuda", "--no-progress", "--register", "--promote", "--force", "--reason",
        "1 epoch: the gate's below-random rule", "--output_dir", str(tmp_path / "out"),
        stdout=io.StringIO(),
    )
    answer = recommend(curriculum="roundtrip", learner="ana")

    keys = set(Concept.objects.filter(curriculum__key="roundtrip").values_list("key", flat=True))
    assert len(keys) == 5 and answer.concept in keys
    assert answer.strategy == "policy" and answer.policy_version == 1


@pytest.mark.django_db
def test_a_dry_runs_progress_bar_ends_at_the_files_size(monkeypatch):
    """A dry run reads the file once (validating): its bar's total is the file's size, so it ends full."""
    import curriculum.management.commands.import_reviewlogs as command

    totals = []

    class Bar:
        def __init__(self, *, total, **kwargs):
            totals.append(total)
            self.n = 0

        def set_postfix_str(self, *args, **kwargs):
            pass

        def update(self, k):
            self.n += k

        def close(self):
            totals.append(self.n)

    monkeypatch.setattr(command, "tqdm", Bar)
    path = FIXTURES / "fsrs_reviews.csv"
    call_command("import_reviewlogs", str(path), "--curriculum", "logs", "--learner", "ana", "--dry-run",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert totals == [path.stat().st_size, path.stat().st_size]
    call_command("import_reviewlogs", str(path), "--curriculum", "logs", "--learner", "ana",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert totals[2:] == [2 * path.stat().st_size, 2 * path.stat().st_size]
