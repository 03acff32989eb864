"""The stages each kind of job goes through, in order, and the one progress bar they make: a stage-aware bar that
fills stage by stage, so that a stage at 100% (all reviews extracted) is not a finished job.

The names are the ``phase`` each job body reports (training/jobs/*.py, the pipeline's stages in training/pipeline.py,
training.services.EVALUATING_ACTIVE and REGISTERING, literal here because training.services imports PyTorch and the
web process reads this); tests/training/test_job_stages.py checks them against the code that reports them.
"""
from __future__ import annotations

from typing import Any

from curriculum.models import PolicyModel
from curriculum.services import held_to_fallback

from ..models import (
    Job, ProtocolEvaluationJob, ReviewImportJob, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob,
)

_TRAINING_BEFORE = ("checking the space for the artifacts", "preparing the data")
# The data stages in the order training.pipeline reports them: a simulated cohort is then extracted; a review log is
# read twice, first to fit the encoder, then to extract with it; a dataset is loaded. (A stage missing here left the
# bar without a place, a moving bar in the middle of the run; two in the wrong order sent it back.)
_TRAINING_DATA = {
    TrainingRun.DataSource.SYNTHETIC: ("simulating students", "extracting trajectories"),
    TrainingRun.DataSource.REVIEW_LOG: ("fitting the encoder", "extracting trajectories"),
    TrainingRun.DataSource.DATASET: ("loading the dataset",),
}
POLICY_GRADIENT_STAGE = "policy gradient"  # after "training" in a run with policy-gradient rounds
_TRAINING_AFTER = ("training", "exporting artifacts", "evaluating",
                   "evaluating the active version under the curriculum's protocol", "registering the candidate version")
# Each stage's share of the bar: its typical share of the job's wall time, relative within a job (a stage not named
# here weighs 1). From the stage timings a training run records (training.hardware: "data 1 s, training 46 s,
# evaluation 56 s" for the demo on an H200; on a CPU worker training takes the larger part) and the phases' own
# timings in the job bodies: training and the evaluations are most of a run, the checks and the bookkeeping around
# them a blink. An equal share per stage made a run's long training one ninth of its bar.
STAGE_WEIGHTS: dict[str, float] = {
    # training runs (and the extraction job's shared phases)
    "checking the space for the artifacts": 0.5, "preparing the data": 1.0, "simulating students": 4.0,
    "extracting trajectories": 4.0, "fitting the encoder": 3.0, "loading the dataset": 1.0, "training": 45.0,
    # the default command's 50 rounds took 3x its offline training on 2 CPU cores (bench/README.md)
    "policy gradient": 135.0,
    "exporting artifacts": 1.0,
    "evaluating": 30.0, "evaluating the active version under the curriculum's protocol": 10.0,
    "registering the candidate version": 0.5,
    # synthetic generation, extraction, import, protocol evaluation
    "simulating the cohort": 3.0, "writing reviews": 2.0, "reading reviews": 1.0, "saving the dataset": 1.0,
    "validating": 3.0, "storing": 5.0, "updating learner states": 2.0, "copying the artifacts": 0.5,
    "evaluating the fallback": 10.0,
}

STAGES: dict[type[Job], tuple[str, ...]] = {
    SyntheticGenerationJob: ("simulating the cohort", "writing reviews"),
    # training.pipeline.build_dataset_from_reviews fits the encoder on a first pass over the log, then extracts
    TrajectoryExtractionJob: ("reading reviews", "fitting the encoder", "extracting trajectories", "saving the dataset"),
    ReviewImportJob: ("validating", "storing", "updating learner states"),
    # training/jobs/protocol_evaluation.py and training/protocol_evaluation.py (the fallback only when the gate holds
    # the version to it: _protocol_evaluation_stages)
    ProtocolEvaluationJob: ("copying the artifacts", "evaluating", "evaluating the fallback"),
}
FALLBACK_STAGE = "evaluating the fallback"


def stage_weight(stage: str) -> float:
    """``stage``'s share of its job's bar, relative to the job's other stages (``STAGE_WEIGHTS``, else 1)."""
    return STAGE_WEIGHTS.get(stage, 1.0)


def job_stages(job: Job) -> tuple[str, ...]:
    """The phases ``job`` goes through, in order (a training run's depend on its data source; a dry-run import
    only validates)."""
    if isinstance(job, TrainingRun):
        after = _TRAINING_AFTER
        if job.policy_gradient_rounds:  # the fine-tuning after the offline training (pipeline.train_and_export)
            after = (after[0], POLICY_GRADIENT_STAGE, *after[1:])
        return _TRAINING_BEFORE + _TRAINING_DATA.get(job.data_source, ()) + after
    if isinstance(job, ReviewImportJob) and job.dry_run:
        return ("validating",)
    if isinstance(job, ProtocolEvaluationJob):
        return _protocol_evaluation_stages(job)
    return next((stages for model, stages in STAGES.items() if isinstance(job, model)), ())


def _protocol_evaluation_stages(job: ProtocolEvaluationJob) -> tuple[str, ...]:
    """A protocol evaluation evaluates the fallback too only when the promotion gate holds its version to the
    fallback (``curriculum.services.held_to_fallback``: no version is active, or the active one covers fewer
    concepts; training.protocol_evaluation.evaluate_under_protocol asks when "evaluating" ends):
    otherwise the fallback's stage is left out, so "evaluating" fills the whole bar instead of stopping at three
    quarters and jumping to done. Once the job reports the fallback's stage it is in, whatever became active since.
    A few queries (the active version, the job's version, their concept counts) otherwise."""
    stages = STAGES[ProtocolEvaluationJob]
    if job.phase == FALLBACK_STAGE:
        return stages
    active = PolicyModel.objects.filter(curriculum_id=job.curriculum_id, status=PolicyModel.Status.ACTIVE).first()
    if active is None:
        return stages
    return stages if job.policy_id is not None and held_to_fallback(candidate=job.policy, active=active) else stages[:-1]


def stage_bar(job: Job) -> dict[str, Any]:
    """The job's progress bar across its stages, as the job JSON's keys:

    ``stages``: the phase names in order; ``stage``: the current one's 1-based number, or None (queued, finished,
    or a phase not in ``stages``); ``bar``: percent 0-100 of the whole job, each stage its share of the job's
    typical time (``STAGE_WEIGHTS``), filled by its own step/steps, never 100 before the job succeeded (99.9 at
    most), or None while the place is unknown (the page then shows a moving bar); ``bar_label``: what the bar means in words ("stage 3 of 9: extracting
    trajectories, 100%").
    """
    stages = job_stages(job)
    base = {"stages": list(stages), "stage": None}
    if job.status == Job.Status.SUCCEEDED:
        return {**base, "bar": 100.0, "bar_label": "done"}
    if job.status == Job.Status.QUEUED:
        return {**base, "bar": 0.0, "bar_label": "waiting for a worker"}
    known = job.phase in stages
    index = stages.index(job.phase) if known else 0
    fraction = min(job.step, job.steps) / job.steps if job.steps and known else 0.0
    weights = [stage_weight(stage) for stage in stages]
    done = sum(weights[:index]) + weights[index] * fraction if known else 0.0
    bar = min(round(100.0 * done / sum(weights), 1), 99.9) if known else None
    if job.is_finished:  # failed or cancelled: the bar stays where the job stopped
        return {**base, "bar": bar or 0.0, "bar_label": _finished_label(job)}
    if not known:
        return {**base, "bar": None, "bar_label": job.phase or "starting"}
    label = f"stage {index + 1} of {len(stages)}: {job.phase}"
    if job.steps:
        label += f", {round(100.0 * fraction)}% ({job.step:,} / {job.steps:,})"
    return {**base, "stage": index + 1, "bar": bar, "bar_label": label}


def _finished_label(job: Job) -> str:
    """"cancelled (before it started)", "failed (training)": the status once, then where it stopped, unless the phase
    already says the status (rows written before the phase stopped repeating it: "cancelled before it started")."""
    status = job.get_status_display().lower()
    if not job.phase:
        return status
    return job.phase if job.phase.lower().startswith(status) else f"{status} ({job.phase})"
