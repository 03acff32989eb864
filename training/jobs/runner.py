"""Running a claimed job: the claim (queued -> running, once), the heartbeat thread with progress and the cancel
flag (JobRun), and recording how the work ended. The job bodies (generation, extraction, training_run) call
``execute``; the lifecycle's guarantees are described in training/jobs/lifecycle.py.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import F

from ..models import Job
from . import lifecycle
from .lifecycle import JobCancelled, JobLost, JobT, heartbeat_seconds, mark_stale_jobs

log = logging.getLogger(__name__)


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

    def confirm_running(self) -> None:
        """Inside a transaction that commits part of the job's work (SQLite's chunked writes,
        curriculum/reviews/chunked.py): raise JobLost, rolling that part back, unless the job is still running, so
        that nothing commits once the stale check has marked it failed (and removed what it had committed)."""
        if not type(self.job).objects.filter(pk=self.job.pk, status=Job.Status.RUNNING).exists():
            self._lost.set()
            raise JobLost(f"{self.job} is no longer running (marked failed by the stale check, or deleted)")

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
        values.update(fields, status=status, finished_at=lifecycle._now(), heartbeat_at=lifecycle._now())
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
        updated = model.objects.filter(pk=self.job.pk, status=Job.Status.RUNNING).update(heartbeat_at=lifecycle._now(), **pending)
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


def claim(model: type[JobT], *, job_id: int, worker: str) -> JobT | None:
    """queued -> running, atomically; None when another delivery already has (or had) the job."""
    now = lifecycle._now()
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


def execute(model: type[JobT], *, job_id: int, worker: str, work: Callable[[JobRun], None]) -> JobT | None:
    """Claim the job, run ``work`` under a heartbeat, record how it ended. Returns the job, or None if not claimed."""
    job = claim(model, job_id=job_id, worker=worker)
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
        log.exception("%s failed", job)  # the traceback stays in the worker's log; the job shows the message
        run.stop()
        _record_end(run, status=Job.Status.FAILED, error=operator_message(exc)[:20000])
    finally:
        run.stop()
    return job


# Exceptions raised by the project's own code carry a message written for the operator (it names the file, field or
# setting and what was expected); anything else is shown with its type, and without file names.
PROJECT_PACKAGES = ("curriculum", "training", "crlsite")


def operator_message(exc: BaseException) -> str:
    """What a failed job shows the operator: the message of the project's own errors (ImportFileError,
    ValidationError's messages, PipelineError, StorageFull...) as is; another exception as ``Type: message`` with
    an OSError's file names left out (``OSError: No space left on device``), and a pointer to the worker's log,
    which keeps the traceback. Never a traceback or a server path of the project's code."""
    from django.core.exceptions import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    if type(exc).__module__.split(".")[0] in PROJECT_PACKAGES:
        return str(exc)
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {message} (the traceback is in the worker's log)"


def _record_end(run: JobRun, *, status: str, **fields: Any) -> None:
    try:
        run.finish(status=status, **fields)
    except JobLost as exc:
        log.warning("%s", exc)


