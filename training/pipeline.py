"""The training pipeline: one entry, ``train_policy``, for `train_crl_policy` and the admin's training runs:
data (synthetic students | a curriculum's review log | an extracted dataset) -> trajectories -> DT -> DTLite
artifacts -> closed-loop evaluation. Registration and promotion stay with the callers (curriculum.services).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connection

from curriculum.evaluation_protocol import EvaluationProtocol
from curriculum.models import Curriculum, ReviewLog
from curriculum.reviews.reader import iter_review_chunks
from curriculum.selectors import concept_keys

from .models import TrainingRun, TrajectoryExtractionJob
from .rl.evaluation import EVALUATION_SEED
from .rl.encoder import EncoderConfig, fit_encoder_config
from .rl.simulator import StudentsLike, generate_logs
from .rl.trainer import TrainConfig, training_device
from .rl.trajectories import (
    DEFAULT_CHUNK_ROWS, ReviewColumns, TrajectoryDataset, dataset_statistics, extract_trajectories,
)
from .spec import DEFAULT_CONCEPTS, TrainingSpec

REVIEW_CHUNK_ROWS = 50_000
# The trainer's settings for every policy this project trains (the command and the admin's runs alike).
# 3e-4 rather than the original DT's 1e-4: 10 epochs of the default dataset are ~1,600 steps, far fewer than the
# original's 100k (earlier mixes, mean final recall: with round_robin 1e-4 -> 0.673 and 6e-4 -> 0.670; without it
# 3e-4 -> 0.686 and 6e-4 with twice the steps -> 0.684). coverage 4 (each dataset step sampled ~4 times an epoch,
# twice the trainer's default): the concept head imitates the behaviour's finer choices better with the extra
# steps (+0.003 to +0.005 mean final recall on validation seeds 3 and 7 against coverage 2), for ~150 s more on 2
# CPU cores. The target return's quantile (0.75/0.9/0.99) moved the result by < 0.001.
TRAIN_DEFAULTS = TrainConfig(learning_rate=3e-4, coverage=4.0)


class PipelineError(Exception):
    """The pipeline cannot run with these inputs; the message says what to change."""


ProgressCallback = Callable[[str, int, int, dict], None]  # (stage, done, total, info)


def _report(on_progress: ProgressCallback | None, stage: str, done: int, total: int, **info: Any) -> None:
    if on_progress is not None:
        on_progress(stage, done, total, info)


def synthetic_concept_keys(count: int) -> list[str]:
    """Keys for a new synthetic curriculum: c00, c01, ... (zero-padded to sort in position order)."""
    width = max(2, len(str(count - 1)))
    return [f"c{i:0{width}d}" for i in range(count)]


# ------------------------------------------------------------------------------------------- datasets
def build_synthetic_dataset(
    *, num_users: int, interactions: int, concepts: int, seed: int, concept_keys: list[str] | None = None,
    on_progress: ProgressCallback | None = None, students_like: StudentsLike | None = None,
) -> TrajectoryDataset:
    """Simulate a cohort under the behaviour-policy mix and turn its log into trajectories.

    Two runs of the same students: a pilot, whose behaviour policies estimate recall with FSRS-6's default
    parameters and whose log the encoder's FSRS-6 is fitted to (``fit_encoder``); then the cohort taught by the
    same policies with the fitted encoder (a tutor that had fitted its estimator to the curriculum). The
    trajectories are encoded with the fitted encoder, which the policy then serves with.
    """
    if concept_keys and len(concept_keys) != concepts:
        raise PipelineError(f"concepts is {concepts} but the curriculum has {len(concept_keys)} concepts")
    rows = num_users * interactions
    _report(on_progress, "simulating students", 0, 2 * rows)
    pilot = generate_logs(num_users=num_users, interactions=interactions, num_concepts=concepts, seed=seed,
                          students_like=students_like)
    _report(on_progress, "simulating students", rows, 2 * rows)
    encoder = fit_encoder(pilot.chunks(size=DEFAULT_CHUNK_ROWS), num_concepts=concepts)
    del pilot
    logs = generate_logs(num_users=num_users, interactions=interactions, num_concepts=concepts, seed=seed,
                         encoder=encoder, students_like=students_like)
    _report(on_progress, "simulating students", 2 * rows, 2 * rows)
    chunks = _progress_chunks(logs.chunks(size=DEFAULT_CHUNK_ROWS), total=len(logs), on_progress=on_progress)
    return extract_trajectories(chunks=chunks, encoder=encoder, concept_keys=concept_keys or None, total_rows=len(logs))


def fit_encoder(chunks: Iterable[ReviewColumns], *, num_concepts: int) -> EncoderConfig:
    """The FSRS-6 encoder fitted to a log (chunks in any order): its 21 parameters and same-day table fitted to the
    log's time-ordered train part (the earlier ``TRAIN_FRACTION``, as the calibration report; see
    training.rl.encoder.fit_encoder_config). Holds the log's five columns in memory (~25 bytes a review).
    PipelineError when the log is empty."""
    parts = {name: [] for name in ("learner", "concept", "t", "correct", "grade")}
    for chunk in chunks:
        for name, values in parts.items():
            values.append(np.asarray(getattr(chunk, name)))
    if not parts["t"] or not sum(len(v) for v in parts["t"]):
        raise PipelineError("cannot fit the encoder: the log has no reviews")
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    config, _ = fit_encoder_config(**columns, num_concepts=num_concepts)
    return config


def students_like_curriculum(*, curriculum: Curriculum | str, chunk_size: int = REVIEW_CHUNK_ROWS) -> StudentsLike:
    """Simulated students like a curriculum's own: FSRS-6 fitted to all of its ReviewLog (a simulator, not a
    prediction to score, so no part is held out), with the simulator's default per-learner spread. PipelineError
    when the curriculum is missing, has no reviews, or too few for the fit (it names the count)."""
    if isinstance(curriculum, str):
        found = Curriculum.objects.filter(key=curriculum).first()
        if found is None:
            raise PipelineError(f"--students-like {curriculum}: no such curriculum")
        curriculum = found
    parts = {name: [] for name in ("learner", "concept", "t", "correct", "grade")}
    for chunk in iter_review_chunks(curriculum=curriculum, chunk_size=chunk_size):
        for name, values in parts.items():
            values.append(np.asarray(chunk[name]))
    if not parts["t"] or not sum(len(v) for v in parts["t"]):
        raise PipelineError(f"--students-like {curriculum.key}: the curriculum has no reviews to fit students to")
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    config, fit = fit_encoder_config(**columns, num_concepts=int(columns["concept"].max()) + 1, train_fraction=1.0)
    students = StudentsLike.from_encoder(config)
    if students is None:
        raise PipelineError(f"--students-like {curriculum.key}: {fit.reason}")
    return students


def _progress_chunks(chunks: Iterable[ReviewColumns], *, total: int, on_progress: ProgressCallback | None):
    done = 0
    _report(on_progress, "extracting trajectories", 0, total)
    for chunk in chunks:
        yield chunk
        done += len(chunk)  # the chunk has been consumed when the next one is asked for
        _report(on_progress, "extracting trajectories", done, max(total, done))


def build_dataset_from_reviews(
    *, curriculum: Curriculum, on_progress: ProgressCallback | None = None, chunk_size: int = REVIEW_CHUNK_ROWS,
) -> TrajectoryDataset:
    """A curriculum's ReviewLog -> trajectories (one episode per learner), streamed in chunks."""
    keys = list(concept_keys(curriculum_id=curriculum.pk))
    if len(keys) < 2:
        raise PipelineError(f"curriculum {curriculum.key!r} has {len(keys)} concepts; a policy needs at least 2")
    total = ReviewLog.objects.filter(curriculum=curriculum).count()
    if total == 0:
        raise PipelineError(f"curriculum {curriculum.key!r} has no reviews (generate or import some first)")

    def columns() -> Iterator[ReviewColumns]:
        for chunk in iter_review_chunks(curriculum=curriculum, chunk_size=chunk_size):
            n = len(chunk["learner"])
            yield ReviewColumns(
                learner=chunk["learner"], concept=chunk["concept"], t=chunk["t"], correct=chunk["correct"],
                grade=chunk["grade"], response_time_ms=np.full(n, -1, dtype=np.int32),
            )

    _report(on_progress, "fitting the encoder", 0, total)
    encoder = fit_encoder(columns(), num_concepts=len(keys))  # a first pass over the log
    _report(on_progress, "fitting the encoder", total, total)
    chunks = _progress_chunks(columns(), total=total, on_progress=on_progress)
    return extract_trajectories(chunks=chunks, encoder=encoder, concept_keys=keys, total_rows=total)


# ------------------------------------------------------------------------------------------- training
@dataclass
class TrainOutcome:
    files: dict[str, str]  # artifact file name -> sha256
    config: dict[str, Any]  # the dt_lite_config.json written
    final_loss: float
    losses: list[float]  # mean loss per epoch
    device: str


def train_and_export(
    *, dataset: TrajectoryDataset, output_dir: str | os.PathLike, epochs: int, batch_size: int, seed: int,
    no_cuda: bool = False, checkpoint_path: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
    train_config: TrainConfig | None = None,
) -> TrainOutcome:
    """Train a Decision Transformer on the dataset and write dt_model.pt, dt_lite_weights.npz and
    dt_lite_config.json to output_dir. Raises trainer.TrainingCancelled when should_stop() says so."""
    from .rl.artifacts import CONFIG_FILE, export_artifacts
    from .rl.trainer import train

    config = replace(train_config or TRAIN_DEFAULTS, epochs=epochs, batch_size=batch_size, seed=seed, no_cuda=no_cuda)
    device = training_device(no_cuda=no_cuda)

    def progress(epoch: int, epochs_: int, step: int, steps: int, loss: float) -> None:
        _report(on_progress, "training", (epoch - 1) * steps + step, epochs_ * steps,
                epoch=epoch, loss=float(loss), device=device)

    try:
        result = train(dataset=dataset, train_config=config, checkpoint_path=checkpoint_path,
                       on_progress=progress, should_stop=should_stop)
    except ValueError as exc:
        raise PipelineError(f"cannot train on this dataset: {exc}") from exc
    _report(on_progress, "exporting artifacts", 0, 1)
    files = export_artifacts(
        model=result.model, output_dir=output_dir, concept_keys=list(dataset.concept_keys), encoder=dataset.encoder,
        target_return=result.target_return, optimizer_state=result.optimizer_state,
        extra={"loss_history": result.loss_history, "epochs": result.epochs_completed, "batch_size": batch_size,
               "seed": seed, "device": result.device, "learning_rate": config.learning_rate,
               "target_return_quantile": config.target_return_quantile},
    )
    _report(on_progress, "exporting artifacts", 1, 1)
    written = json.loads((Path(output_dir) / CONFIG_FILE).read_text())
    return TrainOutcome(files=files, config=written, final_loss=result.final_loss, losses=list(result.loss_history),
                        device=result.device)


# ----------------------------------------------------------------------------------------- evaluation
def evaluate_export(
    *, output_dir: str | os.PathLike, students: int = 200, seed: int = EVALUATION_SEED, interactions: int = 100,
    on_progress: ProgressCallback | None = None, students_like: StudentsLike | None = None,
) -> dict[str, Any]:
    """Closed-loop evaluation of the DTLite policy in output_dir against the baselines (evaluate_policy's JSON):
    the built-in students in "results", and students like the curriculum's own in "students_like" (``students_like``,
    else those the policy's fitted FSRS-6 encoder describes; absent when neither exists)."""
    from .rl.artifacts import CONFIG_FILE, WEIGHTS_FILE, ArtifactError
    from .rl.dtlite import DTLite
    from .rl.evaluation import BASELINES, evaluate

    directory = Path(output_dir)
    try:
        model = DTLite.load(directory / WEIGHTS_FILE, directory / CONFIG_FILE)
    except (ArtifactError, OSError) as exc:
        raise PipelineError(f"cannot load the policy in {directory}: {exc}") from exc
    runs = 1 + len(BASELINES)
    _report(on_progress, "evaluating", 0, runs)

    def progress(done: int, total: int, name: str) -> None:
        _report(on_progress, "evaluating", done, total, policy=name)

    return evaluate(policy=model, num_concepts=int(model.config["action_dim"]), students=students,
                    interactions=interactions, seed=seed, concept_keys=list(model.config["concept_keys"]),
                    students_like=students_like, on_progress=progress)


# ------------------------------------------------------------------------------------------ the entry
@dataclass
class PolicyResult:
    curriculum: Curriculum | None  # the curriculum the policy serves (None: synthetic without one)
    output_dir: Path
    files: dict[str, str]
    config: dict[str, Any]
    metrics: dict[str, Any]
    final_loss: float
    losses: list[float]
    device: str
    dataset_stats: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage


SOURCES = tuple(TrainingRun.DataSource.values)  # "synthetic", "review_log", "dataset"


def train_policy(
    *, spec: TrainingSpec, output_dir: str | os.PathLike, source: str = TrainingRun.DataSource.SYNTHETIC,
    curriculum: Curriculum | str | None = None, dataset: TrajectoryExtractionJob | None = None,
    progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
    students_like: Curriculum | str | None = None,
) -> PolicyResult:
    """Data -> trajectories -> DT -> artifacts in output_dir -> closed-loop evaluation (evaluation.json).

    The evaluation runs under the curriculum's evaluation protocol (``Curriculum.protocol``) when the policy
    serves a curriculum (a curriculum without one and without versions takes ``spec.eval_students`` /
    ``spec.interactions`` as its protocol), else under those; ``metrics["protocol"]`` says which.

    The one entry of `train_crl_policy` and of the admin's training runs. ``source``:

    * "synthetic": simulated students. With a ``curriculum`` (object or key) its concepts are the actions (a
      missing curriculum, given by key, is created with c00, c01, ...; ``spec.concepts`` must be None or equal
      its concept count); without one, ``spec.concepts`` (default DEFAULT_CONCEPTS) keys "0", "1", ...
    * "review_log": the curriculum's ReviewLog, extracted now (``curriculum`` required).
    * "dataset": a succeeded TrajectoryExtractionJob's saved dataset (``dataset`` required); it serves the
      dataset's curriculum.

    ``progress(stage, done, total, info)`` as the stages go; ``should_stop()`` is asked at each stage boundary
    and each training step: when it says so, trainer.TrainingCancelled is raised. Registration and promotion
    are the caller's (curriculum.services). Raises PipelineError naming the parameter for inputs it refuses.

    ``students_like`` (a curriculum or its key): synthetic training students and the evaluation's "students_like"
    population follow FSRS-6 fitted to that curriculum's log (``students_like_curriculum``); the built-in students
    are still evaluated in "results".
    """
    from .rl.trainer import TrainingCancelled

    def boundary() -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled("stopped between the pipeline's stages")

    try:
        spec.validate()
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc
    if source not in SOURCES:
        raise PipelineError(f"source: expected one of {', '.join(SOURCES)}, got {source!r}")
    seconds: dict[str, float] = {}
    started = time.monotonic()
    students = None if students_like is None else students_like_curriculum(curriculum=students_like)
    dataset_data, curriculum = _training_data(spec=spec, source=source, curriculum=curriculum, dataset=dataset,
                                              progress=progress, students_like=students)
    stats = dataset_statistics(dataset_data)
    seconds["data"] = time.monotonic() - started
    boundary()

    output = Path(output_dir)
    stage = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crl-train-") as tmp:
        # The training checkpoint (with the optimizer, for resuming) stays apart from the exported dt_model.pt.
        outcome = train_and_export(dataset=dataset_data, output_dir=output, epochs=spec.epochs,
                                   batch_size=spec.batch_size, seed=spec.seed, no_cuda=spec.no_cuda,
                                   checkpoint_path=Path(tmp) / "train_checkpoint.pt", on_progress=progress,
                                   should_stop=should_stop)
    del dataset_data
    seconds["training"] = time.monotonic() - stage
    boundary()
    stage = time.monotonic()
    # Every version of a curriculum is evaluated under the curriculum's protocol (the same held-out students,
    # seed and reviews per student), whatever data it was trained on, so that versions compare; without a
    # curriculum the spec's evaluation settings, recorded the same way.
    protocol = EvaluationProtocol(students=spec.eval_students, seed=EVALUATION_SEED, interactions=spec.interactions)
    if curriculum is not None:
        from curriculum.services import evaluation_protocol_for

        protocol = evaluation_protocol_for(curriculum=curriculum, proposed=protocol)
    metrics = evaluate_export(output_dir=output, students=protocol.students, seed=protocol.seed,
                              interactions=protocol.interactions, on_progress=progress,
                              students_like=students)
    metrics["protocol"] = protocol.to_dict()
    seconds["evaluation"] = time.monotonic() - stage
    (output / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    seconds["total"] = time.monotonic() - started
    return PolicyResult(curriculum=curriculum, output_dir=output, files=outcome.files, config=outcome.config,
                        metrics=metrics, final_loss=outcome.final_loss, losses=outcome.losses, device=outcome.device,
                        dataset_stats=stats, seconds=seconds)


EVALUATION_FILE = "evaluation.json"


def _training_data(
    *, spec: TrainingSpec, source: str, curriculum: Curriculum | str | None, dataset: TrajectoryExtractionJob | None,
    progress: ProgressCallback | None, students_like: StudentsLike | None = None,
) -> tuple[TrajectoryDataset, Curriculum | None]:
    """The trajectory dataset for ``source`` and the curriculum the policy will serve."""
    if source == TrainingRun.DataSource.DATASET:
        if dataset is None:
            raise PipelineError("dataset: training on an extracted dataset needs the extraction job (--dataset)")
        if dataset.status != TrainingRun.Status.SUCCEEDED or not dataset.dataset_path:
            raise PipelineError(f"dataset: {dataset} has not succeeded (it is {dataset.status})")
        _check_concepts(spec, dataset.curriculum)
        _report(progress, "loading the dataset", 0, 1)
        data = load_extracted_dataset(job=dataset)
        _report(progress, "loading the dataset", 1, 1)
        return data, dataset.curriculum
    if isinstance(curriculum, str):
        key = curriculum
        curriculum = Curriculum.objects.filter(key=key).first()
    else:
        key = curriculum.key if curriculum is not None else None
    if source == TrainingRun.DataSource.REVIEW_LOG:
        if key is None:
            raise PipelineError("training on the ReviewLog (--from-db) needs a curriculum key")
        if curriculum is None:
            raise PipelineError(f"no curriculum {key!r} (import reviews into it first)")
        _check_concepts(spec, curriculum)  # before the extraction's work
        return build_dataset_from_reviews(curriculum=curriculum, on_progress=progress), curriculum
    concepts, keys = spec.concepts, None
    if key:
        curriculum, keys = _synthetic_curriculum(key, spec.concepts)
        concepts = len(keys)
    data = build_synthetic_dataset(num_users=spec.num_users, interactions=spec.interactions,
                                   concepts=concepts or DEFAULT_CONCEPTS, seed=spec.seed, concept_keys=keys,
                                   on_progress=progress, students_like=students_like)
    return data, curriculum


def _check_concepts(spec: TrainingSpec, curriculum: Curriculum) -> None:
    have = curriculum.concepts.count()
    if spec.concepts is not None and spec.concepts != have:
        raise PipelineError(f"--concepts {spec.concepts}: curriculum {curriculum.key!r} has {have} concepts "
                            f"(leave --concepts out when training on its reviews or datasets)")


def load_extracted_dataset(*, job: TrajectoryExtractionJob) -> TrajectoryDataset:
    """The TrajectoryDataset an extraction job saved (read through the storage API, via a temporary file)."""
    from curriculum.services import artifact_storage

    from .rl.trajectories import load_dataset

    with tempfile.TemporaryFile(suffix=".npz") as local:
        with artifact_storage().open(job.dataset_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                local.write(chunk)
        local.seek(0)
        return load_dataset(local)


def find_dataset(*, curriculum_key: str, version: str) -> TrajectoryExtractionJob:
    """A curriculum's succeeded extraction job by dataset version ("3", "v3" or "latest"); PipelineError naming
    --dataset when there is none."""
    jobs = TrajectoryExtractionJob.objects.select_related("curriculum").filter(
        curriculum__key=curriculum_key, status=TrainingRun.Status.SUCCEEDED, version__isnull=False
    )
    text = version.strip().lower()
    if text == "latest":
        found = jobs.order_by("-version").first()
    else:
        try:
            number = int(text.removeprefix("v"))
        except ValueError:
            raise PipelineError(f"--dataset: expected a dataset version (3, v3) or latest, got {version!r}") from None
        found = jobs.filter(version=number).first()
    if found is None:
        have = ", ".join(f"v{v}" for v in jobs.order_by("version").values_list("version", flat=True)) or "none"
        raise PipelineError(f"--dataset {version}: curriculum {curriculum_key!r} has no such extracted dataset "
                            f"(succeeded versions: {have})")
    return found


def _synthetic_curriculum(key: str, concepts: int | None) -> tuple[Curriculum, list[str]]:
    """The curriculum a synthetic policy will serve: existing (its concepts) or new (c00, c01, ...)."""
    from curriculum.services import ensure_curriculum

    curriculum = Curriculum.objects.filter(key=key).first()
    keys = list(concept_keys(curriculum_id=curriculum.pk)) if curriculum is not None else []
    if not keys:
        curriculum = ensure_curriculum(key=key, concept_keys=synthetic_concept_keys(concepts or DEFAULT_CONCEPTS))
        keys = list(concept_keys(curriculum_id=curriculum.pk))
    elif concepts is not None and concepts != len(keys):
        raise PipelineError(f"--concepts {concepts}: curriculum {key!r} has {len(keys)} concepts, and a synthetic "
                            f"policy for it must use exactly those (leave --concepts out)")
    if len(keys) < 2:
        raise PipelineError(f"curriculum {key!r} has {len(keys)} concepts; a policy needs at least 2")
    return curriculum, keys
