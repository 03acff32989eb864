"""The training run job: training.pipeline.train_policy on the run's TrainingSpec and data source (synthetic
students, the curriculum's review log, or an extracted dataset), then the candidate version registered, exactly
once (under the run's row lock, checking ``policy``)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from django.db import transaction

from curriculum.models import Curriculum
from curriculum.services import PolicyError, register_policy


from ..models import Job, TrainingRun
from ..spec import TrainingSpec
from .lifecycle import PARAMETERS, JobLost, launch_job
from .runner import JobRun, execute

logger = logging.getLogger(__name__)


def launch_training_run(*, curriculum: Curriculum, created_by=None, **parameters: Any) -> TrainingRun:
    """A training run on ``parameters`` (``data_source``, ``dataset`` and the TrainingSpec's fields; unset ones
    take the spec's defaults). Giving ``dataset`` implies the dataset data source.

    Raises TypeError for an unknown parameter, ValidationError naming the field for a refused value.
    """
    unknown = set(parameters) - set(PARAMETERS[TrainingRun])
    if unknown:
        raise TypeError(f"launch_training_run: unknown parameters {sorted(unknown)}")
    if parameters.get("dataset") is not None:
        parameters.setdefault("data_source", TrainingRun.DataSource.DATASET)
    return launch_job(job=TrainingRun(curriculum=curriculum, created_by=created_by, **parameters))


def run_training_run(*, job_id: int, worker: str = "") -> TrainingRun | None:
    """Train, export, evaluate against the baselines, register the candidate version: exactly once."""
    return execute(TrainingRun, job_id=job_id, worker=worker, work=_train)


def _record_step_loss(steps: list[list[float]], last: dict, *, epoch: int, done: int, total: int, epochs: int,
                      running_mean: float) -> None:
    """Append [global step, mean loss of the steps since the last report] from the trainer's running epoch
    mean: over steps (a, b] of one epoch the mean is (b * m_b - a * m_a) / (b - a). Halves the points (every
    other one) when they pass TrainingRun.LOSS_STEP_POINTS, so the curve stays light for any number of epochs."""
    per_epoch = max(total // max(epochs, 1), 1)
    within = done - (epoch - 1) * per_epoch
    if within <= 0:
        return
    if epoch == last["epoch"] and within > last["step"]:
        mean = (within * running_mean - last["step"] * last["mean"]) / (within - last["step"])
    else:
        mean = running_mean
    last.update(epoch=epoch, step=within, mean=running_mean)
    steps.append([done, round(mean, 6)])
    if len(steps) > TrainingRun.LOSS_STEP_POINTS:
        steps[:] = [*steps[:-1:2], steps[-1]]


def spec_of(run: TrainingRun) -> TrainingSpec:
    """The TrainingSpec a run was launched with."""
    return TrainingSpec(**{name: getattr(run, name) for name in TrainingSpec.names()})


def _train(run: JobRun) -> None:
    from .. import pipeline
    from ..protocol_evaluation import evaluate_active_under_protocol
    from ..rl.trainer import TrainingCancelled

    job: TrainingRun = run.job  # type: ignore[assignment]
    run.report(phase="preparing the data", steps=0)
    losses: list[float] = []
    steps: list[list[float]] = []  # TrainingRun.loss_steps
    last = {"epoch": 0, "step": 0, "mean": 0.0}  # the previous report: epoch, step within it, its running mean

    def progress(stage: str, done: int, total: int, info: dict | None = None) -> None:
        info = info or {}
        if stage != "training":
            # The progress bar follows the phase: the optimiser's steps while training, the stage's own
            # done/total otherwise (evaluating: policies evaluated of all), so an evaluation of minutes does not
            # sit at 100%.
            if job.loss is not None and len(losses) < job.epoch:
                losses.append(job.loss)  # the last epoch's mean, reported last in it, closes the curve
                run.report(loss_history=list(losses))
            run.report(phase=stage, step=max(done, 0), steps=max(total, 0))
            return
        epoch = int(info.get("epoch", job.epoch))
        if epoch > job.epoch and job.loss is not None and job.epoch:
            # The loss reported last in an epoch is that epoch's mean: it closes the epoch on the curve.
            losses.append(job.loss)
        fields: dict[str, Any] = {"phase": stage, "step": done, "steps": total, "epoch": epoch,
                                  "loss_history": list(losses)}
        if info.get("loss") is not None:
            fields["loss"] = float(info["loss"])
            _record_step_loss(steps, last, epoch=epoch, done=done, total=total, epochs=job.epochs,
                              running_mean=float(info["loss"]))
            fields["loss_steps"] = [list(point) for point in steps]
        if info.get("device"):
            fields["device"] = str(info["device"])
        run.report(**fields)

    with tempfile.TemporaryDirectory(prefix=f"crl-run-{job.pk}-") as tmp:
        try:
            result = pipeline.train_policy(
                spec=spec_of(job), output_dir=Path(tmp) / "artifacts", source=job.data_source,
                curriculum=job.curriculum, dataset=job.dataset, progress=progress, should_stop=run.should_stop,
            )
        except TrainingCancelled:
            run.check()  # says whether it was a cancel request or a lost job
            raise
        run.check()
        # The gate compares the new candidate with the active version under the curriculum's protocol only: make
        # sure the active version has that evaluation now (a worker's long work, not the orchestrator's request).
        # No counts to show here: steps 0 makes the admin's bar indeterminate, labelled with the phase.
        run.report(phase="evaluating the active version under the curriculum's protocol", step=0, steps=0)
        try:
            evaluate_active_under_protocol(curriculum=job.curriculum)
        except PolicyError as exc:  # the candidate is still worth registering; the orchestrator shows the gap
            logger.warning("%s: the active version was not re-evaluated under the protocol: %s", job, exc)
        run.check()
        run.report(phase="registering the candidate version", step=0, steps=0, metrics=result.metrics, device=result.device,
                   loss_history=list(result.losses), loss=result.final_loss)
        with transaction.atomic():
            # The run's row lock + the policy check make registration happen once, whatever the deliveries.
            locked = TrainingRun.objects.select_for_update().get(pk=job.pk)
            if locked.status != Job.Status.RUNNING or locked.policy_id is not None:
                raise JobLost(f"{job} is {locked.status} with version {locked.policy_id}: not registering again")
            policy = register_policy(
                curriculum=job.curriculum, artifact_dir=result.output_dir, config=result.config,
                metrics=result.metrics,
                notes=f"training run #{job.pk}: {job.epochs} epochs, batch {job.batch_size}, seed {job.seed}, "
                f"{job.get_data_source_display()}, device {result.device}",
            )
            run.finish(policy=policy, metrics=result.metrics, device=result.device, loss=result.final_loss,
                       loss_history=list(result.losses), epoch=job.epochs)
