"""The job lifecycle (every job alike): launch (save the row, enqueue on commit), run (claim, work under a heartbeat, finish once),
cancel, retry, and the stale-heartbeat check that marks jobs whose worker died.

Lifecycle and guarantees (the job row is the truth, not the broker):

* launch: the row is saved ``queued`` and the Celery task enqueued by ``transaction.on_commit``, so a worker
  never sees a job that was rolled back. The enqueue (crlsite.celery.publish) never raises and gives up quickly
  when the broker is away; the job then stays ``queued`` and ``publishing.requeue_queued_jobs`` (every worker's
  watch, every CRL_JOB_WATCH_SECONDS, and Celery beat) publishes it again, once, when its queue holds no message.
* run: the worker claims the row with a conditional UPDATE ``queued -> running``; a redelivered or duplicated
  task finds it running or finished and does nothing, so a job never runs twice and a training run never
  registers a second version (registration also happens under the run's row lock, checking ``policy``).
* heartbeat: while a job runs, a thread in the worker writes ``heartbeat_at`` and the latest progress every
  CRL_JOB_HEARTBEAT_SECONDS and reads ``cancel_requested`` back; the work checks the flag at each step
  boundary and stops with ``cancelled``.
* a dead worker process: when the pool process running a job dies (killed for memory, a hard time limit), its
  worker's main process learns it within seconds (Celery's ``task_failure`` with WorkerLostError) and
  ``fail_lost_job`` marks the job ``failed`` at once, saying so.
* stale: a running job whose heartbeat is older than CRL_JOB_STALE_SECONDS had its worker die (the whole worker,
  or its machine); ``mark_stale_jobs`` marks it ``failed`` with the reason. It runs in every worker's watch (every
  CRL_JOB_WATCH_SECONDS, training/jobs/watch.py), when a worker starts (and then also fails, at once, the jobs that
  worker itself was running before it restarted), whenever an operator opens a job page in the admin (so
  ``make run`` needs no extra process), and from Celery beat (task ``mark_stale_jobs``).
  A stale job is not resumed: its partial work is discarded (extraction and training write their results only at
  the end; generation and import write their reviews in one transaction on PostgreSQL, and on SQLite, where they
  commit a chunk at a time, the check deletes what the job had committed: partial_work.discard_partial_work) and
  the operator retries it, which starts a new job with the same parameters.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import (
    Job, ProtocolEvaluationJob, ReviewImportJob, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob,
)
from ..spec import TrainingSpec
from .partial_work import discard_partial_work
from .stages import stage_bar

log = logging.getLogger(__name__)

JobT = TypeVar("JobT", bound=Job)
JOB_MODELS: tuple[type[Job], ...] = (SyntheticGenerationJob, ReviewImportJob, TrajectoryExtractionJob, TrainingRun,
                                    ProtocolEvaluationJob)
# The fields a job is launched with: what the admin's add form shows and what a retry copies.
PARAMETERS: dict[type[Job], tuple[str, ...]] = {
    SyntheticGenerationJob: ("curriculum", "num_users", "interactions", "seed", "policy_mix"),
    ReviewImportJob: ("curriculum", "upload", "filename", "size", "format", "learner", "dry_run"),
    TrajectoryExtractionJob: ("curriculum",),
    TrainingRun: ("curriculum", "data_source", "dataset", *TrainingSpec.names(), "attention_window",
                  "policy_gradient_rounds"),
    ProtocolEvaluationJob: ("curriculum", "policy", "protocol"),
}
# The Celery task of each job, declared here once: training/tasks.py registers its tasks under these names (outside
# clients and CI rely on them).
TASK_NAMES: dict[type[Job], str] = {
    SyntheticGenerationJob: "training.tasks.run_synthetic_generation",
    ReviewImportJob: "training.tasks.run_review_import",
    TrajectoryExtractionJob: "training.tasks.run_trajectory_extraction",
    TrainingRun: "training.tasks.run_training_run",
    ProtocolEvaluationJob: "training.tasks.run_protocol_evaluation",
}


def heartbeat_seconds() -> float:
    return float(getattr(settings, "CRL_JOB_HEARTBEAT_SECONDS", 2.0))


def stale_seconds() -> float:
    return float(getattr(settings, "CRL_JOB_STALE_SECONDS", 60.0))


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


def _enqueue(*, job: Job) -> bool:
    """Publish the job's task (short timeouts, never raises; the routes, training -> gpu queue, live in the
    Celery configuration). False when the broker did not take it: the job stays ``queued`` and
    ``requeue_queued_jobs`` publishes it again later."""
    from crlsite.celery import publish

    return publish(TASK_NAMES[type(job)], args=[job.pk])


def retry_job(*, job: JobT, created_by=None, changes: Mapping[str, Any] | None = None) -> JobT:
    """Launch a new job with the parameters of ``job`` (PARAMETERS) but ``changes`` (e.g. ``{"seed": 43}``); the
    old one keeps its history.

    Raises TypeError naming a change that is not a parameter of the job, ValidationError naming the field for a
    refused value (nothing is launched then).
    """
    changes = dict(changes or {})
    unknown = sorted(set(changes) - set(PARAMETERS[type(job)]))
    if unknown:
        raise TypeError(f"retry_job: {', '.join(unknown)} not parameters of a {job._meta.verbose_name}")
    fields = {name: getattr(job, name) for name in PARAMETERS[type(job)]}
    return launch_job(job=type(job)(created_by=created_by, **{**fields, **changes}))


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
                status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now, phase="before it started"
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
            if model.objects.filter(pk=pk, status=Job.Status.RUNNING, heartbeat_at=heartbeat).update(
                status=Job.Status.FAILED, finished_at=now, phase="",
                error=f"{reason}. Its partial work was discarded; use 'retry' to run it again.",
            ):
                marked += 1
                _discard_partial_work(model, pk)
    if marked:
        log.warning("marked %d stale job(s) failed", marked)
    return marked



def fail_lost_job(*, task_name: str, job_id: Any, worker: str, cause: BaseException) -> bool:
    """Mark failed, at once, the job whose task ``task_name`` (one of TASK_NAMES) was running on ``worker`` when its
    pool process ended without reporting (``cause``: WorkerLostError for a killed process, TimeLimitExceeded), if
    the job is still running there. True when it was marked; any other task or job is left alone."""
    model = next((m for m, name in TASK_NAMES.items() if name == task_name), None)
    if model is None or not isinstance(job_id, int):
        return False
    reason = (f"its worker process ended while running it ({type(cause).__name__}: {str(cause).strip()[:200]}), e.g. "
              "killed by the out-of-memory killer; its partial work was discarded: use 'retry' to run it again, with "
              "less memory (fewer users, a smaller batch) if it was killed for memory")
    running = model.objects.filter(pk=job_id, status=Job.Status.RUNNING)
    marked = bool((running.filter(worker=worker) if worker else running).update(
        status=Job.Status.FAILED, finished_at=_now(), phase="", error=reason))
    if marked:
        log.error("%s #%s failed: %s", model.__name__, job_id, reason)
        _discard_partial_work(model, job_id)
    return marked


def _discard_partial_work(model: type[Job], pk: int) -> None:
    """After a job was marked failed because its worker died: on SQLite, where a generation's or an import's reviews
    commit a chunk at a time, delete what it had committed (a chunk cannot commit after the mark: each checks that
    its job still runs). Never raises: a failure is logged."""
    if connection.vendor != "sqlite":
        return  # PostgreSQL: one transaction, rolled back with the connection of the dead worker
    try:
        discard_partial_work(model, pk)
    except Exception:  # noqa: BLE001 - the check goes on; the rows stay, and the log says so
        log.exception("%s #%s: could not delete the reviews it had stored before its worker died", model.__name__, pk)


# ------------------------------------------------------------------------------------------- for the UI
def job_status(*, job: Job) -> dict[str, Any]:
    """What the admin's progress poller shows. ``percent`` is the progress of the current ``phase`` (step of
    steps); ``bar``, ``stage``, ``stages``, ``bar_label``: the whole job's stage-aware bar (stages.stage_bar);
    ``indeterminate``: a running job whose phase has no counts (steps 0), shown as a moving bar;
    ``started_at`` (ISO 8601 or None) lets the page tick the runtime; a training run's ``hardware_warning`` is its
    no-GPU warning (training.hardware.missing_gpu_warning), "" when none."""
    data: dict[str, Any] = {
        "id": job.pk, "status": job.status, "finished": job.is_finished, "phase": job.phase,
        "step": job.step, "steps": job.steps, "percent": job.progress_percent,
        "indeterminate": job.status == Job.Status.RUNNING and not job.steps,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        "cancel_requested": job.cancel_requested, "error": job.error.splitlines()[0] if job.error else "",
    }
    data.update(stage_bar(job))
    if isinstance(job, ReviewImportJob):
        data.update(dry_run=job.dry_run, result=job.result)
    if isinstance(job, ProtocolEvaluationJob):
        data.update(policy_version=job.policy.version, result=job.result)
    if isinstance(job, TrainingRun):
        data.update(epoch=job.epoch, epochs=job.epochs, loss=job.loss, device=job.device,
                    hardware_warning=(job.hardware or {}).get("warning", ""),
                    policy_version=job.policy.version if job.policy_id else None)
    return data

