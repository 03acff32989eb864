"""Jobs that make policies, their truth kept in the database (status, heartbeat, progress), not in the broker.

``lifecycle``: launch (enqueue on commit), cancel, retry, the stale-heartbeat check, the admin's status view;
``runner``: a worker's claim and heartbeat (JobRun); one module per job body: ``generation`` (synthetic cohort ->
ReviewLog), ``review_import`` (an uploaded review-log file -> ReviewLog), ``extraction`` (ReviewLog -> dataset version), ``training_run`` (train, evaluate, register).
The public names are re-exported here; the test seams (``lifecycle._now``, ``lifecycle._enqueue``) stay there.
"""
from .extraction import launch_trajectory_extraction, run_trajectory_extraction
from .generation import launch_synthetic_generation, run_synthetic_generation
from .lifecycle import (
    JOB_MODELS, PARAMETERS, TASK_NAMES, JobCancelled, JobLost, cancel_job, job_status, launch_job, mark_stale_jobs,
    requeue_queued_jobs, retry_job, stale_seconds,
)
from .review_import import launch_review_import, run_review_import, store_upload
from .runner import JobRun, claim, execute
from .training_run import launch_training_run, run_training_run, spec_of

__all__ = [
    "JOB_MODELS", "PARAMETERS", "TASK_NAMES", "JobCancelled", "JobLost", "JobRun", "cancel_job", "claim", "execute",
    "job_status", "launch_job", "launch_review_import", "launch_synthetic_generation", "launch_training_run", "launch_trajectory_extraction",
    "mark_stale_jobs", "requeue_queued_jobs", "retry_job", "run_review_import", "run_synthetic_generation", "run_training_run", "run_trajectory_extraction",
    "spec_of", "stale_seconds", "store_upload",
]
