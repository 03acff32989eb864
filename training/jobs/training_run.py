"""The training run job: launched with its parameters resolved (``launch_training_run``), run by a worker through
training.services.train_and_register on the run's TrainingSpec and data source (synthetic students, the
curriculum's review log, or an extracted dataset), which registers the candidate version exactly once (under the
run's row lock, checking ``policy``)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from curriculum.models import Curriculum, PolicyModel
from curriculum.services import artifact_storage
from curriculum.storage import check_free_folder, check_free_space

from ..hardware import missing_gpu_warning
from ..models import Job, TrainingRun
from ..spec import DATA_SOURCES, DATASET, TrainingSpec
from .lifecycle import PARAMETERS, JobLost, launch_job
from .runner import JobRun, execute

log = logging.getLogger(__name__)


def launch_training_run(*, curriculum: Curriculum, created_by=None, **parameters: Any) -> TrainingRun:
    """Launch a training run (lifecycle.launch_job) on ``parameters``: ``data_source``, ``dataset``, the
    TrainingSpec's fields, ``attention_window`` (None: the default, the widest exact window; 0: full attention) and
    ``policy_gradient_rounds`` (0: off, the default; N: N rounds of fine-tuning, synthetic data only); unset ones
    take the spec's (or the model's) defaults. Giving ``dataset`` implies the dataset data source.
    The parameters the data source does not read (``ignored_parameters``) are dropped: the run keeps their defaults
    (``unused_parameters`` says which given values that drops). ``concepts`` left unset becomes the curriculum's
    concept count (TrainingSpec.concept_count: DEFAULT_CONCEPTS for a curriculum without concepts yet, which a
    synthetic run then gives it).

    Raises TypeError for an unknown parameter, ValidationError naming the field for a refused value (a ``concepts``
    other than the curriculum's among them).
    """
    unknown = set(parameters) - set(PARAMETERS[TrainingRun])
    if unknown:
        raise TypeError(f"launch_training_run: unknown parameters {sorted(unknown)}")
    if parameters.get("dataset") is not None:
        parameters.setdefault("data_source", TrainingRun.DataSource.DATASET)
    source = parameters.get("data_source", TrainingRun._meta.get_field("data_source").default)
    ignored = ignored_parameters(data_source=source)
    run = TrainingRun(curriculum=curriculum, created_by=created_by,
                      **{name: value for name, value in parameters.items() if name not in ignored})
    if run.concepts is None:
        run.concepts = TrainingSpec().concept_count(curriculum=curriculum.key, have=curriculum.concepts.count())
    return launch_job(job=run)


def ignored_parameters(*, data_source: str) -> tuple[str, ...]:
    """The launch parameters a run on ``data_source`` does not read: the spec's (TrainingSpec.ignored_by), and
    ``dataset`` but for the dataset source. () for an unknown source (the model refuses it, naming the field)."""
    if data_source not in DATA_SOURCES:
        return ()
    return (*(() if data_source == DATASET else ("dataset",)), *TrainingSpec.ignored_by(data_source))


def unused_parameters(*, data_source: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Of ``parameters``, those a run on ``data_source`` ignores that hold something else than what the run keeps
    (the spec's default; no dataset): what ``launch_training_run`` drops, for the caller to say so."""
    kept = {name: None if name == "dataset" else TrainingSpec.default(name)
            for name in ignored_parameters(data_source=data_source)}
    return {name: parameters[name] for name in kept if name in parameters and parameters[name] != kept[name]}


def parameter_sources() -> dict[str, tuple[str, ...]]:
    """For each launch parameter that some data source ignores, the data sources that read it (a launch form shows
    the parameter for those only): ``{"dataset": ("dataset",), "num_users": ("synthetic",)}``."""
    return {name: tuple(source for source in DATA_SOURCES if name not in ignored_parameters(data_source=source))
            for name in PARAMETERS[TrainingRun]
            if any(name in ignored_parameters(data_source=source) for source in DATA_SOURCES)}


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


def _refuse_without_room(job: TrainingRun) -> None:
    """StorageFull before any training when the run's artifacts clearly do not fit: less room, in the artifact
    storage or in the local temporary folder the run writes them to first, than the curriculum's latest version's
    artifacts took (a run without an earlier version is checked when its files are stored)."""
    latest = PolicyModel.objects.filter(curriculum_id=job.curriculum_id).order_by("-version").first()
    if latest is None:
        return
    needed = sum(int(entry.get("size", 0)) for entry in latest.artifacts.values())
    what = f"the run's artifacts (about {needed / 2**20:,.1f} MiB, as {job.curriculum.key} v{latest.version}'s)"
    check_free_space(artifact_storage(), needed=needed, what=what)
    check_free_folder(tempfile.gettempdir(), needed=needed, what=what)


def _with_warning(hardware: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The result's hardware, keeping the no-GPU warning recorded when the run started."""
    return {**hardware, **({"warning": recorded["warning"]} if recorded.get("warning") else {})}


def _train(run: JobRun) -> None:
    # training.services imports PyTorch: only a worker running the job loads it, never the web process launching it
    import torch

    from .. import services
    from ..rl.trainer import TrainingCancelled

    job: TrainingRun = run.job  # type: ignore[assignment]
    warning = missing_gpu_warning(no_cuda=job.no_cuda, cuda_available=torch.cuda.is_available(), worker=job.worker,
                                  gpu_expected=settings.CRL_TRAINING_GPU_EXPECTED)
    if warning:
        log.warning("%s: %s", job, warning)
        run.report(hardware={"warning": warning})
    run.report(phase="checking the space for the artifacts", steps=0)
    _refuse_without_room(job)
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

    def lock_the_run(result) -> None:
        # The run's row lock + the policy check make registration happen once, whatever the deliveries. The
        # result is shown now, so that a run whose registration fails still shows what it trained.
        run.report(metrics=result.metrics, device=result.device, loss_history=list(result.losses),
                   loss=result.final_loss, hardware=_with_warning(result.hardware, job.hardware))
        locked = TrainingRun.objects.select_for_update().get(pk=job.pk)
        if locked.status != Job.Status.RUNNING or locked.policy_id is not None:
            raise JobLost(f"{job} is {locked.status} with version {locked.policy_id}: not registering again")

    def record(policy, result) -> None:  # in the registering transaction: the version and the run commit together
        run.finish(policy=policy, metrics=result.metrics, device=result.device, loss=result.final_loss,
                   loss_history=list(result.losses), epoch=job.epochs,
                   hardware=_with_warning(result.hardware, job.hardware))

    with tempfile.TemporaryDirectory(prefix=f"crl-run-{job.pk}-") as tmp:
        try:
            services.train_and_register(
                spec=spec_of(job), output_dir=Path(tmp) / "artifacts", source=job.data_source,
                curriculum=job.curriculum, dataset=job.dataset, register=True, progress=progress,
                attention_window=job.attention_window,  # None: the default, the widest exact window; 0: full
                policy_gradient_rounds=job.policy_gradient_rounds,  # 0: off; N: N rounds after the offline training
                should_stop=run.should_stop, before_register=lock_the_run, on_registered=record,
                notes=lambda result: (f"training run #{job.pk}: {job.epochs} epochs, batch {job.batch_size}, seed "
                                      f"{job.seed}, {job.get_data_source_display()}, device {result.device}"),
            )
        except TrainingCancelled:
            run.check()  # says whether it was a cancel request or a lost job
            raise
