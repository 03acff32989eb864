"""On PostgreSQL, an import in progress (its transaction open, reviews written) blocks no live review post, and a
promotion of the same curriculum is not held either; the import still stores all or nothing."""
from __future__ import annotations

import datetime as dt
import io
import os
import threading
import time

import pytest
from django.db import connection

from curriculum.models import ReviewLog
from curriculum.reviews.importers.service import import_review_file
from curriculum.reviews.store import record_reviews

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql():
    if connection.vendor != "postgresql":
        if os.environ.get("CRL_REQUIRE_SERVICES"):
            pytest.fail("row locks are PostgreSQL's: run with DATABASE_URL=postgres://...")
        pytest.skip("row locks are PostgreSQL's (SQLite has one writer at a time): set DATABASE_URL=postgres://...")


def hlr_file(rows: int, *, learners: list[str]) -> bytes:
    start = int(dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc).timestamp())
    lines = ["p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,"
             "history_seen,history_correct,session_seen,session_correct"]
    lines += [f"0.9,{start + 60 * i},3600,{learners[i % len(learners)]},es,en,{'c%d' % (i % 3) if i % 7 else 'new%d' % (i % 5)},"
              f"w/{i % 3},1,1,2,{1 + i % 2}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


class PausedImport(threading.Thread):
    """An import paused inside its storing transaction (after its first batch) until ``resume`` is set;
    ``fail`` makes it raise there instead, so that nothing is stored."""

    def __init__(self, data: bytes, *, fail: bool = False):
        super().__init__(daemon=True)
        self.data, self.fail = data, fail
        self.paused, self.resume = threading.Event(), threading.Event()
        self.result = self.error = None

    def progress(self, phase: str, done: int, total) -> None:
        if phase == "storing" and not self.paused.is_set():
            self.paused.set()
            assert self.resume.wait(60)
            if self.fail:
                raise RuntimeError("stopped on purpose")

    def run(self) -> None:
        try:
            self.result = import_review_file(fileobj=io.BytesIO(self.data), filename="big.csv", curriculum_key="logs",
                                             on_progress=self.progress, batch_size=50)
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
        finally:
            connection.close()


def post_review(learner: str, *, second: int) -> float:
    """Seconds a live review post took (in a thread of its own, with its own connection)."""
    took = {}

    def post():
        started = time.monotonic()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '10s'")
            record_reviews(items=[{"curriculum": "logs", "learner": learner, "concept": "c1", "correct": True,
                                   "grade": 3, "reviewed_at": f"2026-01-05T09:00:{second:02d}Z"}])
            took["s"] = time.monotonic() - started
        finally:
            connection.close()

    thread = threading.Thread(target=post)
    thread.start()
    thread.join(30)
    assert "s" in took, "the live review post failed or hung"
    return took["s"]


def test_live_review_posts_and_a_promotion_do_not_wait_for_an_import_in_progress(make_curriculum, make_policy):
    curriculum = make_curriculum("logs", concepts=3)
    record_reviews(items=[{"curriculum": "logs", "learner": "ana", "concept": "c0", "correct": True,
                           "reviewed_at": "2026-01-01T09:00:00Z"}])  # ana has a stored serving state
    candidate = make_policy(curriculum)
    importer = PausedImport(hlr_file(400, learners=["ana", "bob", "cyd"]))
    importer.start()
    assert importer.paused.wait(60), f"the import did not start storing: {importer.error}"
    try:
        # The import's transaction is open and holds its first batch (and its new concepts are committed).
        assert post_review("ana", second=1) < 3  # a learner of the file, with a stored state
        assert post_review("dan", second=2) < 3  # a new learner of the same curriculum
        from curriculum.services import promote_policy

        outcome: dict = {}

        def promote():
            try:  # forced: this test is about locks, not the gate (the candidate has no evaluation)
                outcome["event"] = promote_policy(policy=candidate, reason="during an import", force=True)
            except Exception as error:  # noqa: BLE001  # reported by the assertion below
                outcome["error"] = error
            finally:
                connection.close()

        promoted = threading.Thread(target=promote)
        promoted.start()
        promoted.join(10)
        assert not promoted.is_alive(), "the promotion waited for the import"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["event"].to_version == candidate.version
    finally:
        importer.resume.set()
        importer.join(60)
    assert importer.error is None, importer.error
    assert importer.result.created == 400
    assert ReviewLog.objects.filter(batch=importer.result.batch).count() == 400
    assert ReviewLog.objects.filter(learner__external_id__in=["ana", "dan"], source="live").count() == 3


def test_an_import_that_fails_after_storing_batches_leaves_none_of_its_reviews(make_curriculum):
    make_curriculum("logs", concepts=3)
    importer = PausedImport(hlr_file(400, learners=["ana", "bob"]), fail=True)
    importer.start()
    assert importer.paused.wait(60)
    importer.resume.set()
    importer.join(60)

    assert isinstance(importer.error, RuntimeError)
    assert not ReviewLog.objects.filter(source="imported").exists()
