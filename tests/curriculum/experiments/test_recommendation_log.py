"""The background recommendation log writer: batches rows off the request path, never blocks, counts overflow,
keeps rows through a failed write."""
import threading

import pytest

from curriculum.experiments.recommendation_log import RecommendationLogWriter
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
    original = RecommendationLog.objects.bulk_create
    failures = iter([True, True])

    def flaky(objs, **kwargs):
        if next(failures, False):
            raise RuntimeError("database unreachable")
        return original(objs, **kwargs)

    monkeypatch.setattr(RecommendationLog.objects, "bulk_create", flaky)
    assert writer.submit(rows(curriculum, 5)) == 5

    import time
    deadline = time.monotonic() + 10
    while RecommendationLog.objects.count() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RecommendationLog.objects.count() == 5 and writer.dropped == 0


def test_a_writer_refuses_an_empty_buffer_bound(db):
    with pytest.raises(ValueError, match="RECOMMENDATION_LOG_MAX_BUFFERED"):
        RecommendationLogWriter(max_buffered=0)
