"""Writes of the training side: ``train_and_register``, the one path from a TrainingSpec to a registered (and, if
asked, promoted) policy version. `train_crl_policy` and the training-run job call it (the admin launches the job:
training.jobs.launch_training_run); launching, cancelling and retrying jobs are the job lifecycle's
(training/jobs/). Imports PyTorch (through the pipeline): a web process launches runs, it never runs one.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from curriculum.models import Curriculum, PolicyModel, PromotionEvent
from curriculum.evaluation_protocol import protocol_of
from curriculum.services import PolicyError, evaluated_concept_count, promote_policy, register_policy

from .models import TrajectoryExtractionJob
from .pipeline import PipelineError, PolicyResult, ProgressCallback, train_policy
from .protocol_evaluation import evaluate_active_under_protocol
from .rl.cpu_threads import AUTO
from .rl.trainer import TrainConfig, TrainingCancelled
from .spec import SYNTHETIC, TrainingSpec

logger = logging.getLogger(__name__)

# The phases after training, as the progress callback reports them (no counts: done 0 of 0).
EVALUATING_ACTIVE = "evaluating the active version under the curriculum's protocol"
REGISTERING = "registering the candidate version"


@dataclass
class TrainedVersion:
    """What ``train_and_register`` made: the pipeline's result (artifacts, evaluation, losses), the registered
    version (None when not asked to register; its status as it is after a promotion) and the promotion event."""

    result: PolicyResult
    policy: PolicyModel | None = None
    promotion: PromotionEvent | None = None


class NotPromoted(PolicyError):
    """Trained and registered, but not promoted: the gate refused, or the active version could not be evaluated
    under the curriculum's protocol to compare with. ``outcome`` is what was trained and registered."""

    def __init__(self, message: str, *, outcome: TrainedVersion) -> None:
        super().__init__(message)
        self.outcome = outcome


def train_and_register(
    *,
    spec: TrainingSpec,
    output_dir: str | os.PathLike,
    source: str = SYNTHETIC,
    curriculum: Curriculum | str | None = None,
    dataset: TrajectoryExtractionJob | None = None,
    students_like: Curriculum | str | None = None,
    register: bool = False,
    promote: bool = False,
    force: bool = False,
    reason: str = "",
    actor=None,
    notes: str | Callable[[PolicyResult], str] = "",
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    before_register: Callable[[PolicyResult], None] | None = None,
    on_registered: Callable[[PolicyModel, PolicyResult], None] | None = None,
    eval_processes: int | str = AUTO,
    attention_window: int | None = None,
    train_config: TrainConfig | None = None,
    policy_gradient_rounds: int | None = 0,
) -> TrainedVersion:
    """Train a policy on ``spec`` and ``source`` (training.pipeline.train_policy: artifacts and evaluation.json in
    ``output_dir``); with ``register`` (implied by ``promote``) make it the curriculum's next candidate version,
    with ``promote`` its active version.

    Registering, in order: the curriculum's active version is evaluated under the curriculum's protocol when it
    has no evaluation under it (so that the promotion gate, now or later on the orchestrator, compares like with
    like; a refusal is logged and the candidate still registered); then, in one transaction,
    ``before_register(result)``, ``curriculum.services.register_policy`` with ``notes`` (a string, or made from
    the result), and ``on_registered(policy, result)`` (a training run locks its row in the first, to register
    once, and records its result in the second, so that both commit with the version). Promoting:
    ``curriculum.services.promote_policy`` with ``actor``, ``reason`` and ``force``.

    ``attention_window`` (None: the default, the widest exact window; 0: full attention) is the model's local
    attention window (train_policy's);
    ``train_config`` the trainer's recipe (train_policy's; None: pipeline.TRAIN_DEFAULTS); ``policy_gradient_rounds``
    train_policy's (0: no policy-gradient fine-tuning).

    ``progress(stage, done, total, info)`` follows the pipeline's stages, then EVALUATING_ACTIVE and REGISTERING
    (0 of 0); ``should_stop()`` is asked at every stage boundary: trainer.TrainingCancelled when it says so.
    ``eval_processes``: the worker processes of the closed-loop evaluation (``evaluation.evaluate``'s ``processes``;
    "auto", one per core, by default).

    Raises PipelineError naming the parameter for inputs the pipeline refuses (before any work, when a version to
    register would serve no curriculum); NotPromoted (with ``outcome``) when the version was registered but the
    promotion refused; PolicyError when registering fails.
    """
    register = register or promote
    if register and curriculum is None and dataset is None:
        raise PipelineError("--register/--promote need --curriculum KEY (which curriculum the version serves)")
    result = train_policy(spec=spec, output_dir=output_dir, source=source, curriculum=curriculum, dataset=dataset,
                          progress=progress, should_stop=should_stop, students_like=students_like,
                          eval_processes=eval_processes, attention_window=attention_window,
                          train_config=train_config, policy_gradient_rounds=policy_gradient_rounds)
    outcome = TrainedVersion(result=result)
    if not register:
        return outcome

    _stage(EVALUATING_ACTIVE, progress=progress, should_stop=should_stop)
    unevaluated: PolicyError | None = None
    try:
        evaluate_active_under_protocol(curriculum=result.curriculum, protocol=protocol_of(result.metrics),
                                       num_concepts=evaluated_concept_count(config=result.config,
                                                                           curriculum_id=result.curriculum.pk))
    except PolicyError as exc:  # the candidate is still worth registering; the orchestrator shows the gap
        logger.warning("%s: the active version was not re-evaluated under the protocol: %s", result.curriculum.key,
                       exc)
        unevaluated = exc

    _stage(REGISTERING, progress=progress, should_stop=should_stop)
    with transaction.atomic():
        if before_register is not None:
            before_register(result)
        outcome.policy = register_policy(
            curriculum=result.curriculum, artifact_dir=result.output_dir, config=result.config, metrics=result.metrics,
            notes=notes(result) if callable(notes) else notes,
        )
        if on_registered is not None:
            on_registered(outcome.policy, result)
    if not promote:
        return outcome

    try:
        if unevaluated is not None:
            raise unevaluated
        outcome.promotion = promote_policy(policy=outcome.policy, actor=actor, reason=reason, force=force)
    except PolicyError as exc:
        raise NotPromoted(f"registered {outcome.policy} but did not promote it: {exc}", outcome=outcome) from exc
    outcome.policy.refresh_from_db()
    return outcome


def _stage(stage: str, *, progress: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> None:
    """A stage boundary after training: stop here when asked, else report the stage (no counts)."""
    if should_stop is not None and should_stop():
        raise TrainingCancelled(f"stopped before {stage}")
    if progress is not None:
        progress(stage, 0, 0, {})
