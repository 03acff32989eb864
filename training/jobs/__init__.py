"""Jobs that make policies, their truth kept in the database (status, heartbeat, progress), not in the broker.

``lifecycle``: launch (enqueue on commit), cancel, retry (with changes), the stale-heartbeat check, failing the job of
a worker process that died, the admin's status view; ``publishing``: the queue of each job, the messages waiting
there, re-publishing lost ones idempotently; ``watch``: each worker's periodic stale check and re-publishing;
``runner``: a worker's claim and heartbeat (JobRun); ``stages``: each job's stages and its stage-aware bar;
``partial_work``: what a generation or an import that did not succeed had committed on SQLite, deleted; one
module per job body: ``generation`` (synthetic cohort -> ReviewLog), ``review_import`` (an uploaded review-log file -> ReviewLog), ``extraction`` (ReviewLog -> dataset version), ``training_run`` (train, evaluate, register),
``protocol_evaluation`` (a registered version evaluated under its curriculum's protocol).
The public names are re-exported here; the test seams (``lifecycle._now``, ``lifecycle._enqueue``,
``publishing.waiting_messages``) stay there.
"""
from .extraction import launch_trajectory_extraction, run_trajectory_extraction
from .generation import launch_synthetic_generation, new_cohort_seed, run_synthetic_generation
from .lifecycle import (
    JOB_MODELS, PARAMETERS, TASK_NAMES, JobCancelled, JobLost, cancel_job, fail_lost_job, job_status, launch_job,
    mark_stale_jobs, retry_job, stale_seconds,
)
from .protocol_evaluation import launch_protocol_evaluation, run_protocol_evaluation, unfinished_evaluations
from .publishing import job_queues, requeue_queued_jobs
from .review_import import launch_review_import, launch_uploaded_import, run_review_import, store_upload
from .runner import JobRun, claim, execute
from .training_run import (
    ignored_parameters, launch_training_run, parameter_sources, run_training_run, spec_of, unused_parameters,
)
from .watch import JobWatch

__all__ = [
    "JOB_MODELS", "PARAMETERS", "TASK_NAMES", "JobCancelled", "JobLost", "JobRun", "JobWatch", "cancel_job", "claim",
    "execute", "fail_lost_job", "ignored_parameters", "job_queues", "job_status", "launch_job", "launch_protocol_evaluation",
    "launch_review_import",
    "launch_synthetic_generation", "launch_training_run", "launch_trajectory_extraction", "launch_uploaded_import",
    "mark_stale_jobs", "new_cohort_seed", "parameter_sources", "requeue_queued_jobs", "retry_job", "run_protocol_evaluation",
    "run_review_import",
    "run_synthetic_generation", "run_training_run", "run_trajectory_extraction", "spec_of", "stale_seconds",
    "store_upload", "unfinished_evaluations", "unused_parameters",
]
