"""Celery tasks: a few lines around the job bodies of the same name in training/jobs/ (idempotency and state
live there).

The names are declared once where they are published: a job's in training.jobs.TASK_NAMES, the evaluation under
the protocol's in curriculum.services.EVALUATE_TASK, the periodic ones here (BEAT_SCHEDULE).
Routes: ``run_training_run`` -> queue ``gpu`` (settings.CELERY_TASK_ROUTES), everything else -> ``default``.
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import task_failure, worker_ready

from curriculum.services import EVALUATE_TASK

from . import jobs
from .models import ProtocolEvaluationJob, ReviewImportJob, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob

log = logging.getLogger(__name__)

MARK_STALE_JOBS_TASK = "training.tasks.mark_stale_jobs"
REQUEUE_QUEUED_JOBS_TASK = "training.tasks.requeue_queued_jobs"


@shared_task(bind=True, name=jobs.TASK_NAMES[SyntheticGenerationJob])
def run_synthetic_generation(self, job_id: int) -> None:
    jobs.run_synthetic_generation(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name=jobs.TASK_NAMES[ReviewImportJob])
def run_review_import(self, job_id: int) -> None:
    jobs.run_review_import(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name=jobs.TASK_NAMES[TrajectoryExtractionJob])
def run_trajectory_extraction(self, job_id: int) -> None:
    jobs.run_trajectory_extraction(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name=jobs.TASK_NAMES[TrainingRun])
def run_training_run(self, job_id: int) -> None:
    jobs.run_training_run(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name=jobs.TASK_NAMES[ProtocolEvaluationJob])
def run_protocol_evaluation(self, job_id: int) -> None:
    jobs.run_protocol_evaluation(job_id=job_id, worker=self.request.hostname or "")


@shared_task(name=EVALUATE_TASK)
def evaluate_policy_under_protocol(policy_id: int) -> dict:
    """Evaluate a policy version under its curriculum's protocol and store it; idempotent (a version already
    evaluated under the protocol is not evaluated again)."""
    from curriculum.models import PolicyModel

    from .protocol_evaluation import evaluate_under_protocol

    return evaluate_under_protocol(policy=PolicyModel.objects.select_related("curriculum").get(pk=policy_id))


@shared_task(name=MARK_STALE_JOBS_TASK)
def mark_stale_jobs() -> int:
    """For Celery beat in production (e.g. every minute); admin pages and worker start-up also run the check."""
    return jobs.mark_stale_jobs()


@shared_task(name=REQUEUE_QUEUED_JOBS_TASK)
def requeue_queued_jobs() -> int:
    """For Celery beat (every minute): publish again jobs still queued after CRL_JOB_REQUEUE_SECONDS."""
    return jobs.requeue_queued_jobs()


# Periodic tasks of this app, for CELERY_BEAT_SCHEDULE in the settings (seconds).
BEAT_SCHEDULE = {
    "mark-stale-jobs": {"task": MARK_STALE_JOBS_TASK, "schedule": 60.0},
    "requeue-queued-jobs": {"task": REQUEUE_QUEUED_JOBS_TASK, "schedule": 60.0},
}


@worker_ready.connect
def _fail_jobs_of_a_dead_worker(sender, **kwargs) -> None:
    # A worker that starts runs nothing yet: jobs still "running" under its name died with its last life.
    jobs.mark_stale_jobs(restarted_worker=getattr(sender, "hostname", "") or "")


@worker_ready.connect(dispatch_uid="training.tasks.requeue_after_worker_start")
def _requeue_jobs_whose_message_was_lost(sender=None, **kwargs) -> None:
    # Jobs launched while the broker was away are still queued with no message: publish them again.
    try:
        jobs.requeue_queued_jobs()
    except Exception:  # noqa: BLE001 - a failing catch-up must not stop the worker from starting
        log.exception("could not re-publish queued jobs at worker start")


_watch: jobs.JobWatch | None = None


@worker_ready.connect(dispatch_uid="training.tasks.start_the_job_watch")
def _start_the_job_watch(sender=None, **kwargs) -> None:
    # In the worker's main process (prefork children are forked before this signal): stale jobs and lost messages
    # are found every CRL_JOB_WATCH_SECONDS by every worker, beat or not.
    global _watch
    if _watch is None:
        _watch = jobs.JobWatch().start()


@task_failure.connect(dispatch_uid="training.tasks.fail_the_job_of_a_lost_process")
def _fail_the_job_of_a_lost_process(sender=None, args=None, exception=None, **kwargs) -> None:
    # Sent in the worker's main process when the pool process running a task ended without a result (WorkerLostError:
    # killed, e.g. for memory; TimeLimitExceeded): its job is failed now instead of when its heartbeat goes stale.
    # A job body's own errors never reach here (training.jobs.runner.execute records them).
    if sender is None or not args:
        return
    from django.db import connection

    try:
        jobs.fail_lost_job(task_name=sender.name, job_id=args[0], worker=getattr(sender.request, "hostname", "") or "",
                           cause=exception)
    except Exception:  # noqa: BLE001 - the stale check will find it; the worker must go on
        log.exception("could not mark the job of lost task %s %s failed", sender.name, args)
    finally:
        connection.close()  # the main process holds no connection a pool process forked later would inherit
