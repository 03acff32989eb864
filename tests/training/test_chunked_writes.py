"""The bulk writes of a synthetic generation and of a review import, on SQLite a chunk at a time
(curriculum/reviews/chunked.py): while one writes, its heartbeat brings its progress to the page and an operator's
cancel (another connection: the admin's POST) gets in at once; a cancel, a failure or a lost job leaves none of its
reviews (nor a generation's learners); a worker that died mid-write has them deleted by the stale check. On
PostgreSQL the write stays one transaction."""
from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.urls import reverse

from curriculum.models import Learner, ReviewLog
from curriculum.reviews import bulk, chunked
from curriculum.reviews.importers import service
from training import jobs, tasks
from training.jobs import lifecycle, review_import
from training.jobs.runner import JobRun
from training.jobs.partial_work import STORED_REVIEW_IDS, import_progress_record
from training.models import ReviewImportJob, SyntheticGenerationJob

pytestmark = pytest.mark.django_db(transaction=True)
# SQLite's own path: skipped on PostgreSQL, and marked so that CI runs it in a second pass on the SQLite default (.ci/run)
def sqlite_only(test):
    return pytest.mark.sqlite(pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's chunked writes")(test))


@pytest.fixture(autouse=True)
def _quick_heartbeats_and_no_broker(settings, monkeypatch):
    settings.CRL_JOB_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: True)  # these tests call the tasks themselves


@pytest.fixture
def slow_small_chunks(monkeypatch):
    """Chunks of 10 rows on SQLite, each holding the write lock 0.15 s (as 5,000 real rows do: about 0.4 s)."""
    monkeypatch.setattr(chunked, "SQLITE_CHUNK_ROWS", 10)
    real = bulk._bulk_create_block

    def slow(**kw):
        time.sleep(0.15)
        real(**kw)

    monkeypatch.setattr(bulk, "_bulk_create_block", slow)


class Operator(threading.Thread):
    """Another connection acting while the job writes: waits until ``ready()`` (polled), then runs ``act()`` and
    records how long it took (or what it raised)."""

    def __init__(self, ready, act):
        super().__init__(daemon=True)
        self.ready, self.act = ready, act
        self.seen = self.took = self.error = self.result = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while not (seen := self.ready()):
                assert time.monotonic() < deadline, "timed out waiting for the write to be under way"
                time.sleep(0.02)
            self.seen = seen
            started = time.monotonic()
            self.result = self.act()
            self.took = time.monotonic() - started
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
        finally:
            connection.close()


def writing(job_id: int, model=SyntheticGenerationJob):
    """The job's row as another connection reads it, once its write phase shows progress (None before)."""
    return model.objects.filter(pk=job_id, status="running", phase__in=["writing reviews", "storing"],
                                step__gt=0).first()


# ----------------------------------------------------------------------------------------------- generation
@sqlite_only
@pytest.mark.slow  # seconds of real lock contention: `make test`, not the unit tier
def test_a_cancel_posted_in_the_admin_while_a_generation_writes_gets_in_and_leaves_none_of_it(
        admin_client, curriculum, slow_small_chunks):
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=30, interactions=20, seed=3)  # 600 rows
    admin_client.get(reverse("admin:training_syntheticgenerationjob_change", args=[job.pk]))  # the page is open

    def cancel():
        return admin_client.post(reverse("admin:training_syntheticgenerationjob_cancel", args=[job.pk]), {"post": "yes"})

    operator = Operator(lambda: writing(job.pk), cancel)
    operator.start()
    tasks.run_synthetic_generation(job.pk)
    operator.join(30)

    assert operator.error is None, operator.error
    assert operator.seen.step < 600  # the page showed the write's progress while it ran
    assert operator.result.status_code == 302 and operator.took < 5  # the cancel did not wait for the write
    job.refresh_from_db()
    assert (job.status, job.cancel_requested, job.rows_written, job.error) == ("cancelled", True, 0, "")
    assert not ReviewLog.objects.exists()
    assert not Learner.objects.filter(external_id__startswith=f"syn{job.pk}-").exists()


@sqlite_only
def test_a_generation_writes_every_chunk_and_records_success_with_the_last(curriculum, slow_small_chunks,
                                                                          monkeypatch):
    monkeypatch.setattr(bulk, "REVIEW_WRITE_ROWS", 7)  # blocks of min(7, 10) rows
    seen = []
    real_finish = JobRun.finish

    def finish(self, **fields):  # in the last chunk's transaction: the rows before it are committed already
        seen.append((connection.in_atomic_block, ReviewLog.objects.count()))
        real_finish(self, **fields)

    monkeypatch.setattr(JobRun, "finish", finish)
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=5, interactions=9, seed=3)  # 45 rows
    tasks.run_synthetic_generation(job.pk)

    job.refresh_from_db()
    assert (job.status, job.rows_written, job.progress_percent) == ("succeeded", 45, 100.0)
    assert ReviewLog.objects.filter(batch=job.batch_tag).count() == 45
    assert Learner.objects.filter(external_id__startswith=f"syn{job.pk}-").count() == 5
    assert seen == [(True, 45)]  # finish ran inside the transaction that wrote the last 3 rows


@sqlite_only
def test_a_generation_marked_failed_while_it_writes_commits_no_further_chunk_and_leaves_none(
        curriculum, slow_small_chunks):
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=20, interactions=10, seed=3)

    def mark_failed():  # as the stale check would, had the heartbeat been late
        return SyntheticGenerationJob.objects.filter(pk=job.pk, status="running").update(status="failed",
                                                                                          error="stale")

    operator = Operator(lambda: writing(job.pk), mark_failed)
    operator.start()
    tasks.run_synthetic_generation(job.pk)
    operator.join(30)

    assert operator.error is None and operator.result == 1
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "stale")
    assert not ReviewLog.objects.exists() and not Learner.objects.exists()


@sqlite_only
def test_the_stale_check_deletes_what_a_dead_worker_committed_of_a_generation(curriculum, settings):
    from training.rl.simulator import generate_logs

    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=4, seed=3)
    old = lifecycle._now() - dt.timedelta(seconds=3600)
    SyntheticGenerationJob.objects.filter(pk=job.pk).update(status="running", started_at=old, heartbeat_at=old,
                                                            worker="gone")
    # what its chunks had committed when the worker died: learners, and some of their reviews
    learners = bulk.create_learners(external_ids=[f"syn{job.pk}-u{i}" for i in range(3)])
    logs = generate_logs(num_users=3, interactions=4, num_concepts=5, seed=3)
    concepts = np.array(curriculum.concepts.order_by("position").values_list("id", flat=True))
    bulk.write_reviews(curriculum_id=curriculum.pk, learner_ids=learners[logs.learner][:5],
                       concept_ids=concepts[logs.concept][:5], t=logs.t[:5], correct=logs.correct[:5],
                       grade=logs.grade[:5], response_time_ms=logs.response_time_ms[:5], source="synthetic",
                       batch=job.batch_tag)
    bystander = bulk.create_learners(external_ids=["ana"])

    assert jobs.mark_stale_jobs() == 1

    job.refresh_from_db()
    assert job.status == "failed" and "partial work was discarded" in job.error
    assert not ReviewLog.objects.exists()
    assert list(Learner.objects.values_list("pk", flat=True)) == list(bystander)


# -------------------------------------------------------------------------------------------------- import
def fsrs_file(rows: int) -> bytes:
    lines = ["card_id,review_time,review_rating,review_duration"]
    lines += [f"{100 + i % 3},{1_700_000_000_000 + 60_000 * i},3,1000" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def launch_import(curriculum, data: bytes, name: str = "revlog.csv") -> ReviewImportJob:
    upload = jobs.store_upload(fileobj=ContentFile(data), filename=name)
    return jobs.launch_review_import(curriculum=curriculum, upload=upload, filename=name, size=len(data),
                                     learner="ana")


@pytest.fixture
def slow_batches_of_two(monkeypatch):
    """Imports store 2 reviews a batch, each batch holding the write lock 0.15 s."""
    real_import, real_store = review_import.import_review_file, service.store_reviews

    def store(**kw):
        time.sleep(0.15)
        return real_store(**kw)

    monkeypatch.setattr(service, "store_reviews", store)
    monkeypatch.setattr(review_import, "import_review_file", lambda **kw: real_import(**{**kw, "batch_size": 2}))


@sqlite_only
@pytest.mark.slow  # seconds of real lock contention: `make test`, not the unit tier
def test_a_cancel_posted_in_the_admin_while_an_import_stores_gets_in_and_leaves_none_of_its_reviews(
        admin_client, make_curriculum, slow_batches_of_two):
    curriculum = make_curriculum("logs", concepts=1)
    job = launch_import(curriculum, fsrs_file(60))
    admin_client.get(reverse("admin:training_reviewimportjob_change", args=[job.pk]))  # the page is open

    def stored_so_far():
        """Once some batches committed: the job's record of them, and the reviews another connection sees."""
        stored = sorted(ReviewLog.objects.values_list("pk", flat=True))
        row = writing(job.pk, ReviewImportJob)  # read after: its record covers at least those
        if row is None or len(stored) < 4:
            return None
        return row.result, stored

    def cancel():
        return admin_client.post(reverse("admin:training_reviewimportjob_cancel", args=[job.pk]), {"post": "yes"})

    operator = Operator(stored_so_far, cancel)
    operator.start()
    tasks.run_review_import(job.pk)
    operator.join(30)

    assert operator.error is None, operator.error
    record, stored = operator.seen
    covered = {pk for first, last in record[STORED_REVIEW_IDS] for pk in range(first, last + 1)}
    assert set(stored) <= covered  # every committed review is on the job's record (for the stale check)
    assert operator.result.status_code == 302 and operator.took < 5
    job.refresh_from_db()
    assert (job.status, job.result, job.error) == ("cancelled", {}, "")
    assert not ReviewLog.objects.exists()
    assert Learner.objects.filter(external_id="ana").exists()  # the learners it added stay, without reviews


@sqlite_only
def test_an_import_that_fails_after_storing_batches_leaves_none_of_its_reviews_on_sqlite(make_curriculum,
                                                                                        monkeypatch):
    import io

    make_curriculum("logs", concepts=1)
    real, calls = service.store_reviews, []

    def third_batch_fails(**kw):
        calls.append(1)
        if len(calls) == 3:
            assert ReviewLog.objects.count() == 4  # two batches committed
            raise RuntimeError("disk full")
        return real(**kw)

    monkeypatch.setattr(service, "store_reviews", third_batch_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        service.import_review_file(fileobj=io.BytesIO(fsrs_file(10)), filename="r.csv", curriculum_key="logs",
                                   learner="ana", batch_size=2)
    assert not ReviewLog.objects.exists()


@sqlite_only
def test_the_stale_check_deletes_only_the_reviews_a_dead_import_recorded(make_curriculum):
    import io

    curriculum = make_curriculum("logs", concepts=1)
    earlier = service.import_review_file(fileobj=io.BytesIO(fsrs_file(6)), filename="r.csv", curriculum_key="logs",
                                         learner="ana")
    kept = set(ReviewLog.objects.values_list("pk", flat=True))
    job = launch_import(curriculum, fsrs_file(6), name="r.csv")
    # what a dead import of the same file name and head had committed: reviews of the same batch tag
    concept = curriculum.concepts.get(key="100")
    learner = Learner.objects.get(external_id="ana")
    rows = ReviewLog.objects.bulk_create([
        ReviewLog(learner=learner, curriculum=curriculum, concept=concept, correct=True, grade=3, source="imported",
                  batch=earlier.batch, reviewed_at=dt.datetime(2026, 1, 1, 9, i, tzinfo=dt.timezone.utc))
        for i in range(3)])
    old = lifecycle._now() - dt.timedelta(seconds=3600)
    ReviewImportJob.objects.filter(pk=job.pk).update(
        status="running", started_at=old, heartbeat_at=old, worker="gone",
        result=import_progress_record(batch=earlier.batch, id_ranges=[[rows[0].pk, rows[-1].pk]]))

    assert jobs.mark_stale_jobs() == 1

    job.refresh_from_db()
    assert (job.status, job.result) == ("failed", {})
    assert set(ReviewLog.objects.values_list("pk", flat=True)) == kept  # the earlier import's reviews stay


def test_a_running_imports_record_is_not_shown_as_its_counts(admin_client, make_curriculum):
    curriculum = make_curriculum("logs", concepts=1)
    job = launch_import(curriculum, fsrs_file(2))
    ReviewImportJob.objects.filter(pk=job.pk).update(
        status="running", result=import_progress_record(batch="import:x", id_ranges=[[1, 2]]))

    page = admin_client.get(reverse("admin:curriculum_curriculum_change", args=[curriculum.pk])).content.decode()

    assert 'id="import-jobs"' in page and "reviews created" not in page and " rows:" not in page


# ------------------------------------------------------------------------------------------ either database
def test_a_chunked_write_commits_chunk_by_chunk_on_sqlite_and_once_on_postgresql(curriculum, monkeypatch):
    monkeypatch.setattr(chunked, "SQLITE_CHUNK_ROWS", 4)
    monkeypatch.setattr(bulk, "REVIEW_WRITE_ROWS", 4)
    learners = bulk.create_learners(external_ids=["a", "b"])
    concept = curriculum.concepts.first().pk
    n = 10
    seen_by_another_connection = []

    def count_elsewhere(rows):
        def count():
            seen_by_another_connection.append(ReviewLog.objects.count())
            connection.close()

        other = threading.Thread(target=count)
        other.start()
        other.join(10)

    with chunked.ChunkedWrite(undo=lambda: None) as write:
        bulk.write_reviews(
            curriculum_id=curriculum.pk, learner_ids=np.array([learners[i % 2] for i in range(n)]),
            concept_ids=np.full(n, concept), t=1.7e9 + np.arange(n, dtype=float), correct=np.ones(n, dtype=bool),
            grade=np.full(n, 3, dtype=np.int8), response_time_ms=np.full(n, 900, dtype=np.int32), source="synthetic",
            batch="b", chunks=write, on_rows=count_elsewhere,
        )
    assert write.chunked == (connection.vendor == "sqlite")
    if connection.vendor == "sqlite":
        assert seen_by_another_connection == [4, 8, 8]  # the last block commits after its on_rows
    else:  # one transaction: nothing is visible before the commit
        assert seen_by_another_connection == [0, 0, 0]
    assert ReviewLog.objects.count() == n


@sqlite_only
@pytest.mark.slow  # seconds of real lock contention: `make test`, not the unit tier
def test_a_writer_waiting_for_the_lock_gets_it_between_chunks():
    """SQLite's busy handler is not fair: without the pauses a waiter polls in vain while chunks follow each other."""
    from curriculum.models import Curriculum

    held = []

    def busy_chunks():
        try:
            with chunked.ChunkedWrite(undo=lambda: None) as write:
                for _ in range(40):  # 40 chunks of 0.1 s each, back to back
                    with write.chunk():
                        Curriculum.objects.filter(key="nothing").update(name="x")  # takes the lock
                        time.sleep(0.1)
                        held.append(1)
        finally:
            connection.close()

    writer = threading.Thread(target=busy_chunks)
    writer.start()
    while not held:
        time.sleep(0.01)
    started = time.monotonic()
    Curriculum.objects.create(key="waiting", name="waiting")
    waited, chunks_before = time.monotonic() - started, len(held)
    writer.join(30)
    assert waited < 2 and chunks_before < 30  # got in long before the 40 chunks ended
