"""Celery tasks: a few lines around the job bodies of the same name in training/jobs/ (idempotency and state
live there).

Routes: ``run_training_run`` -> queue ``gpu`` (settings.CELERY_TASK_ROUTES), everything else -> ``default``.
"""
from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from . import jobs


@shared_task(bind=True, name="training.tasks.run_synthetic_generation")
def run_synthetic_generation(self, job_id: int) -> None:
    jobs.run_synthetic_generation(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name="training.tasks.run_review_import")
def run_review_import(self, job_id: int) -> None:
    jobs.run_review_import(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name="training.tasks.run_trajectory_extraction")
def run_trajectory_extraction(self, job_id: int) -> None:
    jobs.run_trajectory_extraction(job_id=job_id, worker=self.request.hostname or "")


@shared_task(bind=True, name="training.tasks.run_training_run")
def run_training_run(self, job_id: int) -> None:
    jobs.run_training_run(job_id=job_id, worker=self.request.hostname or "")


@shared_task(name="training.tasks.evaluate_policy_under_protocol")
def evaluate_policy_under_protocol(policy_id: int) -> dict:
    """Evaluate a policy version under its curriculum's protocol and store it; idempotent (a version already
    evaluated under the protocol is not evaluated again)."""
    from curriculum.models import PolicyModel

    from .protocol_evaluation import evaluate_under_protocol

    return evaluate_under_protocol(policy=PolicyModel.objects.select_related("curriculum").get(pk=policy_id))


@shared_task(name="training.tasks.mark_stale_jobs")
def mark_stale_jobs() -> int:
    """For Celery beat in production (e.g. every minute); admin pages and worker start-up also run the check."""
    return jobs.mark_stale_jobs()


@shared_task(name="training.tasks.requeue_queued_jobs")
def requeue_queued_jobs() -> int:
    """For Celery beat (every minute): publish again jobs still queued after CRL_JOB_REQUEUE_SECONDS."""
    return jobs.requeue_queued_jobs()


# Periodic tasks of this app, for CELERY_BEAT_SCHEDULE in the settings (seconds).
BEAT_SCHEDULE = {
    "mark-stale-jobs": {"task": "training.tasks.mark_stale_jobs", "schedule": 60.0},
    "requeue-queued-jobs": {"task": "training.tasks.requeue_queued_jobs", "schedule": 60.0},
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
        import logging

        logging.getLogger(__name__).exception("could not re-publish queued jobs at worker start")
