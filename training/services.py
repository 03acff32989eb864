"""Jobs' logic: launch (save the row, enqueue on commit), run (claim, work under a heartbeat, finish once),
cancel, retry, and the stale-heartbeat check that marks jobs whose worker died.

Lifecycle and guarantees (the job row is the truth, not the broker):

* launch: the row is saved ``queued`` and the Celery task enqueued by ``transaction.on_commit``, so a worker
  never sees a job that was rolled back.
* run: the worker claims the row with a conditional UPDATE ``queued -> running``; a redelivered or duplicated
  task finds it running or finished and does nothing, so a job never runs twice and a training run never
  registers a second version (registration also happens under the run's row lock, checking ``policy``).
* heartbeat: while a job runs, a thread in the worker writes ``heartbeat_at`` and the latest progress every
  CRL_JOB_HEARTBEAT_SECONDS and reads ``cancel_requested`` back; the work checks the flag at each step
  boundary and stops with ``cancelled``.
* stale: a running job whose heartbeat is older than CRL_JOB_STALE_SECONDS had its worker die; ``mark_stale_jobs``
  marks it ``failed`` with the reason. It runs when a worker starts (and then also fails, at once, the jobs that
  worker itself was running before it restarted), whenever an operator opens a job page in the admin (so
  ``make run`` needs no extra process), and, in production, from Celery beat (task ``mark_stale_jobs``).
  A stale job is not resumed: its partial work is discarded (generation writes its rows in one transaction,
  extraction and training write their results only at the end) and the operator retries it, which starts
  a new job with the same parameters.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import threading
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from curriculum.models import Concept, Curriculum, Learner, ReviewLog
from curriculum.services import artifact_storage, register_policy

from .models import Job, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob
from .rl.evaluation import EVALUATION_SEED

log = logging.getLogger(__name__)

JobT = TypeVar("JobT", bound=Job)
JOB_MODELS: tuple[type[Job], ...] = (SyntheticGenerationJob, TrajectoryExtractionJob, TrainingRun)
# The fields a job is launched with: what the admin's add form shows and what a retry copies.
PARAMETERS: dict[type[Job], tuple[str, ...]] = {
    SyntheticGenerationJob: ("curriculum", "num_users", "interactions", "seed", "policy_mix"),
    TrajectoryExtractionJob: ("curriculum",),
    TrainingRun: (
        "curriculum", "data_source", "dataset", "num_users", "interactions", "concepts", "epochs", "batch_size",
        "seed", "no_cuda", "eval_students",
    ),
}
TASK_NAMES: dict[type[Job], str] = {
    SyntheticGenerationJob: "training.tasks.run_synthetic_generation",
    TrajectoryExtractionJob: "training.tasks.run_trajectory_extraction",
    TrainingRun: "training.tasks.run_training_run",
}
REVIEW_WRITE_ROWS = 50_000  # rows per COPY block / bulk_create round, and per progress report


def heartbeat_seconds() -> float:
    return float(getattr(settings, "CRL_JOB_HEARTBEAT_SECONDS", 2.0))


def stale_seconds() -> float:
    return float(getattr(settings, "CRL_JOB_STALE_SECONDS", 300.0))


def _now() -> dt.datetime:
    """The clock of heartbeats and the stale check (a seam: tests move it forward)."""
    return timezone.now()


class JobCancelled(Exception):
    """An operator asked the job to stop; raised at a step boundary."""


class JobLost(Exception):
    """The row is no longer this worker's (marked failed as stale, or deleted): stop without writing results."""


# ------------------------------------------------------------------------------------------------ launch
def launch_job(*, job: JobT) -> JobT:
    """Validate and save a new job, and enqueue its task once the transaction commits.

    Raises django.core.exceptions.ValidationError naming the field when a parameter is not acceptable.
    """
    job.status = Job.Status.QUEUED
    job.full_clean()
    with transaction.atomic():
        job.save()
        transaction.on_commit(lambda: _enqueue(job=job))
    return job


def _enqueue(*, job: Job) -> None:
    from crlsite.celery import app  # the routes (training -> gpu queue) live in its configuration

    app.send_task(TASK_NAMES[type(job)], args=[job.pk])


def launch_synthetic_generation(
    *, curriculum: Curriculum, num_users: int, interactions: int, seed: int = 42,
    policy_mix: dict[str, float] | None = None, created_by=None,
) -> SyntheticGenerationJob:
    return launch_job(job=SyntheticGenerationJob(
        curriculum=curriculum, num_users=num_users, interactions=interactions, seed=seed,
        policy_mix=policy_mix or {}, created_by=created_by,
    ))


def launch_trajectory_extraction(*, curriculum: Curriculum, created_by=None) -> TrajectoryExtractionJob:
    return launch_job(job=TrajectoryExtractionJob(curriculum=curriculum, created_by=created_by))


def launch_training_run(*, curriculum: Curriculum, created_by=None, **parameters: Any) -> TrainingRun:
    """A training run on ``parameters`` (the fields of PARAMETERS[TrainingRun]; unset ones take the defaults)."""
    unknown = set(parameters) - set(PARAMETERS[TrainingRun])
    if unknown:
        raise TypeError(f"launch_training_run: unknown parameters {sorted(unknown)}")
    if parameters.get("dataset") is not None:
        parameters.setdefault("data_source", TrainingRun.DataSource.DATASET)
    return launch_job(job=TrainingRun(curriculum=curriculum, created_by=created_by, **parameters))


def retry_job(*, job: JobT, created_by=None) -> JobT:
    """A new job with the same parameters (the old one keeps its history)."""
    fields = {name: getattr(job, name) for name in PARAMETERS[type(job)]}
    return launch_job(job=type(job)(created_by=created_by, **fields))


def cancel_job(*, job: Job) -> str:
    """Cancel a queued job at once, ask a running one to stop at its next step boundary.

    Returns what happened: "cancelled", "requested" or "finished" (nothing to do).
    """
    model = type(job)
    with transaction.atomic():
        current = model.objects.select_for_update().get(pk=job.pk)
        if current.status == Job.Status.QUEUED:
            now = _now()
            model.objects.filter(pk=job.pk).update(
                status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now, phase="cancelled before it started"
            )
            return "cancelled"
        if current.status == Job.Status.RUNNING:
            model.objects.filter(pk=job.pk).update(cancel_requested=True)
            return "requested"
    return "finished"


# ------------------------------------------------------------------------------------------ stale check
def mark_stale_jobs(*, restarted_worker: str = "") -> int:
    """Mark failed every running job whose heartbeat is older than CRL_JOB_STALE_SECONDS (its worker died),
    and every running job claimed by ``restarted_worker`` (a worker that is starting cannot be running any).
    Returns how many were marked.
    """
    now = _now()
    cutoff = now - dt.timedelta(seconds=stale_seconds())
    marked = 0
    for model in JOB_MODELS:
        stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        if restarted_worker:
            stale |= Q(worker=restarted_worker)
        # Read first: an admin page load must not take SQLite's write lock when there is nothing to mark.
        for pk, heartbeat, worker in model.objects.filter(stale, status=Job.Status.RUNNING).values_list(
            "pk", "heartbeat_at", "worker"
        ):
            if restarted_worker and worker == restarted_worker and (heartbeat is None or heartbeat >= cutoff):
                reason = f"its worker {worker} restarted while it was running"
            else:
                last = f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC" if heartbeat else "never"
                reason = (
                    f"no heartbeat from its worker {worker or '(unknown)'} for more than {stale_seconds():.0f} s "
                    f"(last: {last}): the worker died or was killed"
                )
            # Conditional on the heartbeat we read: a worker that beats meanwhile keeps its job.
            marked += model.objects.filter(pk=pk, status=Job.Status.RUNNING, heartbeat_at=heartbeat).update(
                status=Job.Status.FAILED, finished_at=now, phase="",
                error=f"{reason}. Its partial work was discarded; use 'retry' to run it again.",
            )
    if marked:
        log.warning("marked %d stale job(s) failed", marked)
    return marked


# ---------------------------------------------------------------------------------------- running a job
class JobRun:
    """A worker's handle on the job it claimed: progress kept in memory and written, with the heartbeat, by a
    thread every few seconds (so the work never waits on the database for it); the cancel flag read back."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, name=f"heartbeat-{job._meta.model_name}-{job.pk}", daemon=True)

    # -- the work's side
    def report(self, **fields: Any) -> None:
        """Record progress fields (written with the next heartbeat)."""
        with self._lock:
            self._pending.update(fields)
        for name, value in fields.items():
            setattr(self.job, name, value)

    def should_stop(self) -> bool:
        return self._cancel.is_set() or self._lost.is_set()

    def check(self) -> None:
        """A step boundary: stop here when the job was cancelled or taken away."""
        if self._lost.is_set():
            raise JobLost(f"{self.job} is no longer running (marked failed by the stale check, or deleted)")
        if self._cancel.is_set():
            raise JobCancelled(f"{self.job} was cancelled")

    def finish(self, *, status: str = Job.Status.SUCCEEDED, **fields: Any) -> None:
        """Write the final state, conditional on the job still being ours; raises JobLost otherwise.

        Call it inside the transaction that writes the job's results, so results and status commit together.
        """
        self._stop.set()
        with self._lock:
            pending, self._pending = self._pending, {}
        values = {**pending, "phase": ""}  # the status says it all now
        if status == Job.Status.SUCCEEDED:
            values["step"] = self.job.steps or self.job.step
        values.update(fields, status=status, finished_at=_now(), heartbeat_at=_now())
        if not type(self.job).objects.filter(pk=self.job.pk, status=Job.Status.RUNNING).update(**values):
            raise JobLost(f"{self.job} is no longer running: its result was not recorded")
        for name, value in values.items():
            setattr(self.job, name, value)

    # -- the heartbeat thread
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # A beat blocked on a lock (SQLite during a long write) finishes on its own; its write is conditional
        # on status=running, so it cannot undo the final state.
        self._thread.join(timeout=heartbeat_seconds() + 1)

    def beat(self) -> None:
        """Write the heartbeat and pending progress; read the cancel flag."""
        with self._lock:
            pending, self._pending = self._pending, {}
        model = type(self.job)
        updated = model.objects.filter(pk=self.job.pk, status=Job.Status.RUNNING).update(heartbeat_at=_now(), **pending)
        if not updated:
            self._lost.set()
            return
        if model.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            self._cancel.set()

    def _beat_loop(self) -> None:
        try:
            while not self._stop.wait(heartbeat_seconds()):
                try:
                    self.beat()
                except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                    log.exception("heartbeat of %s failed", self.job)
        finally:
            connection.close()  # this thread's own connection


def _claim(model: type[JobT], *, job_id: int, worker: str) -> JobT | None:
    """queued -> running, atomically; None when another delivery already has (or had) the job."""
    now = _now()
    claimed = model.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker, phase="starting",
        attempts=F("attempts") + 1,
    )
    job = model.objects.select_related("curriculum").filter(pk=job_id).first()
    if job is None:
        log.warning("%s %s does not exist (deleted?); nothing to run", model.__name__, job_id)
        return None
    if claimed:
        return job
    if job.status == Job.Status.RUNNING:
        log.warning("%s is already running on %s (a redelivered task?); not running it twice", job, job.worker)
        mark_stale_jobs()  # if that worker is dead, say so now instead of at the next check
    else:
        log.info("%s is already %s; nothing to do", job, job.status)
    return None


def _execute(model: type[JobT], *, job_id: int, worker: str, work: Callable[[JobRun], None]) -> JobT | None:
    """Claim the job, run ``work`` under a heartbeat, record how it ended. Returns the job, or None if not claimed."""
    job = _claim(model, job_id=job_id, worker=worker)
    if job is None:
        return None
    run = JobRun(job)
    run.start()
    try:
        work(run)
    except JobCancelled:
        log.info("%s cancelled", job)
        run.stop()
        _record_end(run, status=Job.Status.CANCELLED, error="")
    except JobLost as exc:
        log.warning("%s", exc)
    except Exception as exc:
        log.exception("%s failed", job)
        run.stop()
        detail = "".join(traceback.format_exception(exc)[-6:])
        _record_end(run, status=Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}\n\n{detail}"[:20000])
    finally:
        run.stop()
    return job


def _record_end(run: JobRun, *, status: str, **fields: Any) -> None:
    try:
        run.finish(status=status, **fields)
    except JobLost as exc:
        log.warning("%s", exc)


# ------------------------------------------------------------------------------- synthetic generation
def run_synthetic_generation(*, job_id: int, worker: str = "") -> SyntheticGenerationJob | None:
    """Simulate the cohort and write its reviews; all rows and the ``succeeded`` status commit together."""
    return _execute(SyntheticGenerationJob, job_id=job_id, worker=worker, work=_generate)


def _generate(run: JobRun) -> None:
    from .rl.simulator import generate_logs

    job: SyntheticGenerationJob = run.job  # type: ignore[assignment]
    concept_ids = np.array(
        Concept.objects.filter(curriculum=job.curriculum).order_by("position").values_list("id", flat=True), dtype=np.int64
    )
    total = job.num_users * job.interactions
    run.report(phase="simulating the cohort", steps=total)
    logs = generate_logs(
        num_users=job.num_users, interactions=job.interactions, num_concepts=len(concept_ids), seed=job.seed,
        policy_mix=job.policy_mix or None,
    )
    run.check()
    run.report(phase="writing reviews")
    with transaction.atomic():
        learners = create_learners(external_ids=[f"syn{job.pk}-u{i}" for i in range(job.num_users)])
        written = write_reviews(
            curriculum_id=job.curriculum_id, learner_ids=learners[logs.learner], concept_ids=concept_ids[logs.concept],
            t=logs.t, correct=logs.correct, grade=logs.grade, response_time_ms=logs.response_time_ms,
            source=ReviewLog.Source.SYNTHETIC, batch=job.batch_tag,
            on_rows=lambda rows: (run.report(step=rows, rows_written=rows), run.check()),
        )
        run.finish(rows_written=written, step=written)


def create_learners(*, external_ids: list[str]) -> np.ndarray:
    """Create new learners; their database ids, int64, in the order given."""
    objs = Learner.objects.bulk_create([Learner(external_id=e) for e in external_ids], batch_size=5000)
    if all(o.pk is not None for o in objs):
        return np.array([o.pk for o in objs], dtype=np.int64)
    ids = dict(Learner.objects.filter(external_id__in=external_ids).values_list("external_id", "pk"))
    return np.array([ids[e] for e in external_ids], dtype=np.int64)


def write_reviews(
    *, curriculum_id: int, learner_ids: np.ndarray, concept_ids: np.ndarray, t: np.ndarray, correct: np.ndarray,
    grade: np.ndarray, response_time_ms: np.ndarray, source: str, batch: str, method: str = "auto",
    check_keys_once: bool = True, on_rows: Callable[[int], None] | None = None,
) -> int:
    """Insert review rows given as columns (database ids, t in epoch seconds, grade 1-4 and response_time_ms
    >= 0 on every row, as the simulator makes them), in blocks of REVIEW_WRITE_ROWS, in one transaction.

    ``method``: "copy" (PostgreSQL's binary COPY FROM STDIN, the fast path), "bulk_create", or "auto" (COPY
    where the database is PostgreSQL). Serving state (LearnerState) is not updated: bulk-written reviews are
    training data. ``on_rows(rows_so_far)`` is called after each block.

    ``check_keys_once`` (COPY only): PostgreSQL checks each foreign key with a trigger per row, which is most
    of a bulk load's time (three lookups per review). Where the database role may set
    ``session_replication_role`` (a superuser, or ``GRANT SET ON PARAMETER session_replication_role``), the
    keys are instead checked once per distinct value, under the same FOR KEY SHARE locks the triggers take
    (held until commit), and the COPY runs without the per-row triggers. Other roles get the triggers.
    """
    if method == "auto":
        method = "copy" if connection.vendor == "postgresql" else "bulk_create"
    n = len(learner_ids)
    created_at = _now()
    with transaction.atomic():
        if method == "copy":
            per_key = check_keys_once and can_check_keys_once()
            if per_key:
                _lock_referenced_rows(curriculum_id=curriculum_id, learner_ids=learner_ids, concept_ids=concept_ids)
            write = partial(_copy_block, skip_row_triggers=per_key)
        else:
            write = {"bulk_create": _bulk_create_block}[method]
        for start in range(0, n, REVIEW_WRITE_ROWS):
            part = slice(start, start + REVIEW_WRITE_ROWS)
            write(
                curriculum_id=curriculum_id, learner_ids=learner_ids[part], concept_ids=concept_ids[part], t=t[part],
                correct=correct[part], grade=grade[part], response_time_ms=response_time_ms[part], source=source,
                batch=batch, created_at=created_at,
            )
            if on_rows:
                on_rows(min(start + REVIEW_WRITE_ROWS, n))
    return n


def can_check_keys_once() -> bool:
    """Whether this database role may run a COPY without the per-row foreign-key triggers (see write_reviews)."""
    with connection.cursor() as cursor:
        if connection.pg_version >= 150000:
            cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
        else:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    return bool(row and row[0])


def _lock_referenced_rows(*, curriculum_id: int, learner_ids: np.ndarray, concept_ids: np.ndarray) -> None:
    """The foreign-key triggers' check, once per distinct key: each referenced row must exist, and stays locked
    FOR KEY SHARE until commit so that nobody deletes it meanwhile. Raises IntegrityError naming the column."""
    wanted = {
        "curriculum_id": (Curriculum, [int(curriculum_id)]),
        "concept_id": (Concept, np.unique(concept_ids).tolist()),
        "learner_id": (Learner, np.unique(learner_ids).tolist()),
    }
    with connection.cursor() as cursor:
        for column, (model, ids) in wanted.items():
            cursor.execute(f"SELECT id FROM {model._meta.db_table} WHERE id = ANY(%s) FOR KEY SHARE", [ids])
            found = {row[0] for row in cursor.fetchall()}
            if len(found) != len(ids):
                missing = sorted(set(ids) - found)[:5]
                raise IntegrityError(f"{ReviewLog._meta.db_table}.{column}: no {model.__name__} with id {missing}")


_PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_PGCOPY_TRAILER = b"\xff\xff"


def _copy_block(
    *, curriculum_id, learner_ids, concept_ids, t, correct, grade, response_time_ms, source, batch, created_at,
    skip_row_triggers: bool = False,
) -> None:
    """One COPY ... FROM STDIN (FORMAT BINARY): every row has the same layout, so NumPy lays out the whole
    block as one structured array (no per-row Python, no text parsing on the server)."""
    source_b, batch_b = source.encode(), batch.encode()
    fields = [("n", ">i2")]
    for name, kind in (("learner", ">i8"), ("curriculum", ">i8"), ("concept", ">i8"), ("reviewed", ">i8"),
                       ("correct", "u1"), ("grade", ">i2"), ("rt", ">i4"), ("source", f"S{len(source_b)}"),
                       ("batch", f"S{len(batch_b)}"), ("created", ">i8")):
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    rows = np.empty(len(learner_ids), dtype=np.dtype(fields))
    rows["n"] = 10
    for name, _ in fields[1::2]:
        rows[name] = rows.dtype[name.removesuffix("_len")].itemsize
    rows["learner"], rows["curriculum"], rows["concept"] = learner_ids, curriculum_id, concept_ids
    rows["reviewed"] = np.round((t - _PG_EPOCH_S) * 1e6).astype(np.int64)
    rows["correct"], rows["grade"], rows["rt"] = correct, grade, response_time_ms
    rows["source"], rows["batch"] = source_b, batch_b
    rows["created"] = round((created_at.timestamp() - _PG_EPOCH_S) * 1e6)
    table = ReviewLog._meta.db_table
    columns = "learner_id, curriculum_id, concept_id, reviewed_at, correct, grade, response_time_ms, source, batch, created_at"
    with connection.cursor() as cursor:
        if skip_row_triggers:  # keys checked by _lock_referenced_rows; only this statement runs without triggers
            cursor.execute("SET LOCAL session_replication_role = replica")
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_PGCOPY_HEADER + rows.tobytes() + _PGCOPY_TRAILER)
        if skip_row_triggers:  # (a failed COPY rolls the transaction back, and the SET LOCAL with it)
            cursor.execute("SET LOCAL session_replication_role = origin")


def _bulk_create_block(*, curriculum_id, learner_ids, concept_ids, t, correct, grade, response_time_ms, source, batch, created_at) -> None:
    times = [dt.datetime.fromtimestamp(s, tz=dt.timezone.utc) for s in t.tolist()]
    rows = [
        ReviewLog(
            learner_id=learner, curriculum_id=curriculum_id, concept_id=concept, reviewed_at=when, correct=ok,
            grade=g, response_time_ms=rt, source=source, batch=batch, created_at=created_at,
        )
        for learner, concept, when, ok, g, rt in zip(
            learner_ids.tolist(), concept_ids.tolist(), times, correct.tolist(), grade.tolist(), response_time_ms.tolist()
        )
    ]
    ReviewLog.objects.bulk_create(rows, batch_size=5000)


# ---------------------------------------------------------------------------------- trajectory extraction
def run_trajectory_extraction(*, job_id: int, worker: str = "") -> TrajectoryExtractionJob | None:
    """ReviewLog -> a trajectory dataset saved as the curriculum's next dataset version, with its statistics."""
    return _execute(TrajectoryExtractionJob, job_id=job_id, worker=worker, work=_extract)


def _extract(run: JobRun) -> None:
    from . import pipeline
    from .rl.trajectories import dataset_statistics, save_dataset

    job: TrajectoryExtractionJob = run.job  # type: ignore[assignment]
    total = ReviewLog.objects.filter(curriculum=job.curriculum).count()
    run.report(phase="reading reviews", steps=total)

    def progress(stage: str, done: int, total: int, info: dict | None = None) -> None:
        run.report(phase=stage, step=done, steps=max(total, done), rows_read=done)
        run.check()

    dataset = pipeline.build_dataset_from_reviews(curriculum=job.curriculum, on_progress=progress)
    run.check()
    run.report(phase="saving the dataset")
    statistics = dataset_statistics(dataset)
    storage = artifact_storage()
    # Through a temporary file, not memory: the dataset may be most of the worker's memory already.
    with tempfile.TemporaryFile(suffix=".npz") as fh:
        save_dataset(dataset, fh)
        del dataset
        fh.seek(0)
        with transaction.atomic():
            Curriculum.objects.select_for_update().get(pk=job.curriculum_id)  # dataset versions are numbered under it
            version = (
                TrajectoryExtractionJob.objects.filter(curriculum_id=job.curriculum_id).aggregate(v=Max("version"))["v"] or 0
            ) + 1
            folder = f"datasets/{job.curriculum.key}/v{version}"
            path = storage.save(f"{folder}/dataset.npz", File(fh))
            storage.save(f"{folder}/statistics.json", ContentFile(json.dumps(statistics, indent=2).encode()))
            run.finish(version=version, dataset_path=path, statistics=statistics, rows_read=total, step=total)


def load_extracted_dataset(*, job: TrajectoryExtractionJob):
    """The TrajectoryDataset an extraction job saved (read through the storage API, via a temporary file)."""
    from .rl.trajectories import load_dataset

    with tempfile.TemporaryFile(suffix=".npz") as local:
        with artifact_storage().open(job.dataset_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                local.write(chunk)
        local.seek(0)
        return load_dataset(local)


# ---------------------------------------------------------------------------------------- training runs
def run_training_run(*, job_id: int, worker: str = "") -> TrainingRun | None:
    """Train, export, evaluate against the baselines, register the candidate version: exactly once."""
    return _execute(TrainingRun, job_id=job_id, worker=worker, work=_train)


def _train(run: JobRun) -> None:
    from . import pipeline
    from .rl.trainer import TrainingCancelled

    job: TrainingRun = run.job  # type: ignore[assignment]
    run.report(phase="preparing the data", steps=0)
    if job.data_source == TrainingRun.DataSource.DATASET:
        dataset = load_extracted_dataset(job=job.dataset)
    else:
        dataset = pipeline.build_synthetic_dataset(
            num_users=job.num_users, interactions=job.interactions, concepts=job.concepts, seed=job.seed,
            concept_keys=pipeline.curriculum_concept_keys(curriculum=job.curriculum),
        )
    run.check()
    losses: list[float] = []

    def progress(stage: str, done: int, total: int, info: dict | None = None) -> None:
        info = info or {}
        epoch = int(info.get("epoch", job.epoch))
        if epoch > job.epoch and job.loss is not None and job.epoch:
            # The loss reported last in an epoch is that epoch's mean: it closes the epoch on the curve.
            losses.append(job.loss)
        fields: dict[str, Any] = {"phase": stage, "step": done, "steps": total, "epoch": epoch,
                                  "loss_history": list(losses)}
        if info.get("loss") is not None:
            fields["loss"] = float(info["loss"])
        if info.get("device"):
            fields["device"] = str(info["device"])
        run.report(**fields)

    with tempfile.TemporaryDirectory(prefix=f"crl-run-{job.pk}-") as tmp:
        output_dir = Path(tmp) / "artifacts"
        try:
            outcome = pipeline.train_and_export(
                dataset=dataset, output_dir=output_dir, epochs=job.epochs, batch_size=job.batch_size, seed=job.seed,
                no_cuda=job.no_cuda, checkpoint_path=Path(tmp) / "checkpoint.pt", on_progress=progress,
                should_stop=run.should_stop,
            )
        except TrainingCancelled:
            run.check()  # says whether it was a cancel request or a lost job
            raise
        del dataset
        run.check()
        run.report(phase="evaluating against the baselines", device=outcome.device, loss_history=list(outcome.losses),
                   loss=outcome.final_loss)
        # One evaluation seed for every run: candidates are compared on the same held-out students.
        metrics = pipeline.evaluate_export(
            output_dir=output_dir, students=job.eval_students, seed=EVALUATION_SEED, interactions=job.interactions
        )
        run.check()
        run.report(phase="registering the candidate version", metrics=metrics)
        with transaction.atomic():
            # The run's row lock + the policy check make registration happen once, whatever the deliveries.
            locked = TrainingRun.objects.select_for_update().get(pk=job.pk)
            if locked.status != Job.Status.RUNNING or locked.policy_id is not None:
                raise JobLost(f"{job} is {locked.status} with version {locked.policy_id}: not registering again")
            policy = register_policy(
                curriculum=job.curriculum, artifact_dir=output_dir, config=outcome.config, metrics=metrics,
                notes=f"training run #{job.pk}: {job.epochs} epochs, batch {job.batch_size}, seed {job.seed}, "
                f"{job.get_data_source_display()}, device {outcome.device}",
            )
            run.finish(policy=policy, metrics=metrics, device=outcome.device, loss=outcome.final_loss,
                       loss_history=list(outcome.losses), epoch=job.epochs)


# ------------------------------------------------------------------------------------------- for the UI
def job_status(*, job: Job) -> dict[str, Any]:
    """What the admin's progress poller shows."""
    data: dict[str, Any] = {
        "id": job.pk, "status": job.status, "finished": job.is_finished, "phase": job.phase,
        "step": job.step, "steps": job.steps, "percent": job.progress_percent,
        "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        "cancel_requested": job.cancel_requested, "error": job.error.splitlines()[0] if job.error else "",
    }
    if isinstance(job, TrainingRun):
        data.update(epoch=job.epoch, epochs=job.epochs, loss=job.loss, device=job.device,
                    policy_version=job.policy.version if job.policy_id else None)
    return data

