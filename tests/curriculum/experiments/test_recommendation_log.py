"""The background recommendation log writer: batches rows off the request path, never blocks, counts overflow,
keeps rows through a failed write."""
import threading

import pytest

from curriculum.experiments import recommendation_log
from curriculum.experiments.recommendation_log import LogRow, RecommendationLogWriter, SynchronousRecommendationLogWriter
from curriculum.models import RecommendationLog


def rows(curriculum, n, start=0):
    from django.utils import timezone

    return [RecommendationLog(curriculum=curriculum, learner=f"u{start + i}", concept="c0", candidates=3,
                              propensity=1.0, at=timezone.now()) for i in range(n)]


@pytest.fixture
def background(transactional_db):
    made = []

    def make(**kwargs):
        made.append(RecommendationLogWriter(**kwargs))
        return made[-1]

    yield make
    for writer in made:
        writer.close(timeout=2)


def test_rows_are_stored_by_the_thread_in_batches(background, make_curriculum):
    curriculum = make_curriculum("demo", concepts=2)
    writer = background(max_buffered=100, batch=7)

    assert writer.submit(rows(curriculum, 20)) == 20
    assert writer.flush(timeout=10)
    assert RecommendationLog.objects.count() == 20 and writer.written == 20 and writer.dropped == 0
    assert writer._thread.name == "recommendation-log" and writer._thread is not threading.current_thread()


def test_a_full_buffer_drops_and_counts_without_blocking(background, make_curriculum, caplog):
    curriculum = make_curriculum("demo", concepts=2)
    writer = background(max_buffered=3, interval_s=60, batch=1000)  # the thread sleeps: nothing leaves the buffer

    assert writer.submit(rows(curriculum, 2)) == 2
    assert writer.submit(rows(curriculum, 4, start=2)) == 1

    assert (writer.pending(), writer.dropped) == (3, 3)
    assert "recommendation log buffer full" in caplog.text
    assert writer.flush(timeout=10) and RecommendationLog.objects.count() == 3


def test_a_failed_write_keeps_the_rows_for_the_next_try(background, make_curriculum, monkeypatch):
    curriculum = make_curriculum("demo", concepts=2)
    writer = background(max_buffered=50, interval_s=0.05)
    original = recommendation_log.store
    failures = iter([True, True])

    def flaky(batch):
        if next(failures, False):
            raise RuntimeError("database unreachable")
        return original(batch)

    monkeypatch.setattr(recommendation_log, "store", flaky)
    assert writer.submit(rows(curriculum, 5)) == 5

    import time
    deadline = time.monotonic() + 10
    while RecommendationLog.objects.count() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RecommendationLog.objects.count() == 5 and writer.dropped == 0


def test_a_writer_refuses_an_empty_buffer_bound(db):
    with pytest.raises(ValueError, match="RECOMMENDATION_LOG_MAX_BUFFERED"):
        RecommendationLogWriter(max_buffered=0)


def test_a_log_row_has_the_models_columns_in_order():
    assert LogRow._fields == tuple(field.attname for field in RecommendationLog._meta.concrete_fields)


def test_the_offered_concepts_read_back_as_written():
    assert recommendation_log.offered_text([0, 3, 4]) == "0,3,4"
    assert recommendation_log.offered_positions("0,3,4") == (0, 3, 4)
    assert recommendation_log.offered_text(None) == "" and recommendation_log.offered_positions("") is None
    with pytest.raises(ValueError, match="offered: expected positions separated by commas"):
        recommendation_log.offered_positions("0;3")


def test_rows_and_model_instances_are_stored_with_every_value(db, make_curriculum):
    """The COPY path (PostgreSQL) and bulk_create (elsewhere) store the same values: a tuple and an instance."""
    import datetime as dt
    import uuid

    from curriculum.models import PolicyModel

    curriculum = make_curriculum("demo", concepts=2)
    policy = PolicyModel.objects.create(curriculum=curriculum, version=1)
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.timezone.utc)
    row = LogRow(id=uuid.uuid4(), curriculum_id=curriculum.id, learner="u-\u00e9\t1", policy_id=policy.id,
                 concept="c1", candidates=2, propensity=0.125, exploration="softmax", arm_id=None, served=False, at=at,
                 offered="0,1")
    instance = RecommendationLog(curriculum=curriculum, learner="u-2", concept="c0", candidates=2, propensity=1.0,
                                 at=at)
    assert SynchronousRecommendationLogWriter().submit([row, instance]) == 2

    stored = RecommendationLog.objects.get(id=row.id)
    assert recommendation_log.as_row(stored) == row
    other = RecommendationLog.objects.get(id=instance.id)
    assert (other.learner, other.policy_id, other.exploration, other.served, other.offered) == (
        "u-2", None, "argmax", True, None)


def test_a_rejected_row_stores_none_of_its_batch(db, make_curriculum, caplog):
    import datetime as dt
    import uuid

    curriculum = make_curriculum("demo", concepts=2)
    good = LogRow(uuid.uuid4(), curriculum.id, "u-1", None, "c0", 2, 0.5, "argmax", None, True,
                  dt.datetime.now(dt.timezone.utc))
    bad = good._replace(id=uuid.uuid4(), propensity=0.0)  # outside (0, 1]: the table's check constraint

    assert SynchronousRecommendationLogWriter().submit([good, bad]) == 0
    assert "cannot store 2 recommendation log rows" in caplog.text
    assert not RecommendationLog.objects.exists()
