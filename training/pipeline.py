"""The training pipeline: ``train_policy``, data (synthetic students | a curriculum's review log | an extracted
dataset) -> trajectories -> DT -> DTLite artifacts -> closed-loop evaluation. Its one caller is
``training.services.train_and_register`` (for `train_crl_policy` and the training runs alike), which registers and
promotes what it makes.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from curriculum.evaluation_protocol import FITTED_TO_REVIEW_LOG, FITTED_TO_SIMULATED_PILOT, EvaluationProtocol
from curriculum.models import Curriculum, ReviewLog
from curriculum.reviews.reader import iter_review_chunks
from curriculum.selectors import concept_keys
from curriculum.services import artifact_storage, ensure_curriculum, evaluation_protocol_for

from .data_sufficiency import training_data_summary
from .models import TrainingRun, TrajectoryExtractionJob
from .rl.evaluation import EVALUATION_FAMILIES, EVALUATION_INTERACTIONS, EVALUATION_SEED, EVALUATION_STUDENTS
from .rl.cpu_threads import AUTO
from .rl.encoder import EncoderConfig, fit_encoder_config
from .rl.model_config import DEFAULT_CONTEXT_LENGTH, DEFAULT_NUM_LAYERS, attention_window_problem
from .rl.simulator import StudentsLike, generate_logs
from .rl.students import BUILTIN, FITTED, parse_families
from .rl.trainer import TrainConfig, training_device
from .rl.dataset_statistics import dataset_statistics
from .rl.review_columns import ReviewColumns
from .rl.trajectories import DEFAULT_CHUNK_ROWS, TrajectoryDataset, extract_trajectories
from .spec import DATA_SOURCES, TrainingSpec

logger = logging.getLogger(__name__)

REVIEW_CHUNK_ROWS = 50_000
# The trainer's settings for every policy this project trains (the command and the admin's runs alike).
# 3e-4 rather than the original DT's 1e-4: 10 epochs of the default dataset are ~1,600 steps, far fewer than the
# original's 100k (earlier mixes, mean final recall: with round_robin 1e-4 -> 0.673 and 6e-4 -> 0.670; without it
# 3e-4 -> 0.686 and 6e-4 with twice the steps -> 0.684). coverage 4 (each dataset step sampled ~4 times an epoch,
# twice the trainer's default): the concept head imitates the behaviour's finer choices better with the extra
# steps (+0.003 to +0.005 mean final recall on validation seeds 3 and 7 against coverage 2), for ~150 s more on 2
# CPU cores. The target return's quantile (0.75/0.9/0.99) moved the result by < 0.001. Tried for issue 22 (the default
# run in 5 minutes on 2 cores) and dropped: coverage 2.4 with a cosine decay to 0.1 x the rate (60% of the steps) lost
# 0.010 to 0.015 mean final recall on all four validation pairs (bench/README.md, training_recipe.py).
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
    families: str | None = None, concept_exponents: bool = False,
) -> TrajectoryDataset:
    """Simulate a cohort under the behaviour-policy mix and turn its log into trajectories.

    ``families``: the student families the learners are drawn from ("builtin,actr", see
    ``rl.simulator.generate_logs``); None or "builtin" the older students (the built-in ones, or ``students_like``'s
    when given). PipelineError for "fitted" without ``students_like`` or an unknown family.

    Two runs of the same students: a pilot, whose behaviour policies estimate recall with FSRS-6's default
    parameters and whose log the encoder's FSRS-6 is fitted to (``fit_encoder``); then the cohort taught by the
    same policies with the fitted encoder (a tutor that had fitted its estimator to the curriculum). The
    trajectories are encoded with the fitted encoder, which the policy then serves with. ``concept_keys`` name
    the ``concepts`` actions (default "0", "1", ...). ``concept_exponents``: the encoder's fit also gives each
    concept its recall exponent (``fit_encoder_config``; off by default, an experiment's switch).
    """
    try:
        chosen = parse_families(families)
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc
    if FITTED in chosen and students_like is None:
        raise PipelineError("families: 'fitted' needs students like a curriculum's own (--students-like CURRICULUM)")
    mixed = None if chosen == (BUILTIN,) else chosen
    rows = num_users * interactions
    _report(on_progress, "simulating students", 0, 2 * rows)
    processes = AUTO  # one per core for a large cohort (the log is the same whatever the number)
    pilot = generate_logs(num_users=num_users, interactions=interactions, num_concepts=concepts, seed=seed,
                          students_like=students_like, families=mixed, processes=processes)
    _report(on_progress, "simulating students", rows, 2 * rows)
    encoder = fit_encoder(pilot.chunks(size=DEFAULT_CHUNK_ROWS), num_concepts=concepts,
                          concept_exponents=concept_exponents)
    del pilot
    logs = generate_logs(num_users=num_users, interactions=interactions, num_concepts=concepts, seed=seed,
                         encoder=encoder, students_like=students_like, families=mixed, processes=processes)
    _report(on_progress, "simulating students", 2 * rows, 2 * rows)
    chunks = _progress_chunks(logs.chunks(size=DEFAULT_CHUNK_ROWS), total=len(logs), on_progress=on_progress)
    return extract_trajectories(chunks=chunks, encoder=encoder, concept_keys=concept_keys or None, total_rows=len(logs))


def fit_encoder(chunks: Iterable[ReviewColumns], *, num_concepts: int, concept_exponents: bool = False) -> EncoderConfig:
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
    config, _ = fit_encoder_config(**columns, num_concepts=num_concepts, concept_exponents=concept_exponents)
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
    keys: list[str] | None = None,
) -> TrajectoryDataset:
    """A curriculum's ReviewLog -> trajectories (one episode per learner), streamed in chunks. ``keys``: the
    curriculum's ``policy_concept_keys`` when the caller has them already. PipelineError when the curriculum has
    fewer than 2 concepts or no reviews."""
    keys = policy_concept_keys(curriculum=curriculum) if keys is None else keys
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
    hardware: dict[str, Any] = field(default_factory=dict)  # training_hardware(): where and how fast it trained


def training_hardware(result: Any) -> dict[str, Any]:
    """Where and how fast a trainer.TrainResult trained, as recorded in dt_lite_config.json's "extra", the
    command's summary and the training run's page: device ("cpu" | "cuda"), device_name ("cpu" or the GPU's
    name), dtype, optimizer_steps, steps_per_s (optimiser steps per second of the training loop, batches
    included) and training_s (the trainer's wall time, seconds)."""
    return {"device": result.device, "device_name": result.device_name, "dtype": result.dtype,
            "optimizer_steps": result.optimizer_steps, "steps_per_s": round(result.steps_per_second, 2),
            "training_s": round(result.seconds, 2)}


def check_attention_window(attention_window: int | None, architecture: dict[str, int] | None = None) -> None:
    """Refuse a local attention window the model (the default size, or ``architecture``'s context length and layers)
    cannot take: PipelineError naming ``--attention-window`` and the bound. None (the widest exact window) and 0 (full
    attention) pass. The rule is model_config.attention_window_problem's (the admin's launch form applies it too),
    the same bound as DTConfig's; no PyTorch is needed to check."""
    # the window's bound depends on these two only; another field of ``architecture`` is DTConfig's to refuse later
    shape = {"context_length": DEFAULT_CONTEXT_LENGTH, "num_layers": DEFAULT_NUM_LAYERS}
    shape.update({name: value for name, value in (architecture or {}).items() if name in shape})
    problem = attention_window_problem(attention_window, **shape)
    if problem:
        raise PipelineError(f"--attention-window {attention_window}: {problem}")


def train_and_export(
    *, dataset: TrajectoryDataset, output_dir: str | os.PathLike, epochs: int, batch_size: int, seed: int,
    no_cuda: bool = False, checkpoint_path: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
    train_config: TrainConfig | None = None, stage_seconds: dict[str, float] | None = None,
    attention_window: int | None = None, dropout: float | None = None, architecture: dict[str, int] | None = None,
    encoder_fitted_to: str | None = None, policy_gradient: Any = None, processes: int | str = AUTO,
) -> TrainOutcome:
    """Train a Decision Transformer on the dataset and write dt_model.pt, dt_lite_weights.npz and
    dt_lite_config.json to output_dir. The config's "extra" records training_hardware() and "stage_seconds":
    the given stage_seconds (e.g. {"data": s}, the stages before this one) plus "training". ``attention_window``
    (DTConfig's; None: ``trainer.default_model_config``'s default, the widest exact window; 0: full attention) the
    model's local attention; ``dropout`` (DTConfig's; None: its
    default, 0.1) the model's dropout rate during training; ``architecture`` other DTConfig fields (e.g.
    ``{"hidden_dim": 128, "num_layers": 4, "num_heads": 4}``, the original DT's size; None: DTConfig's).
    ``encoder_fitted_to``: what the dataset's encoder was fitted to (FITTED_TO_REVIEW_LOG, FITTED_TO_SIMULATED_PILOT),
    recorded in "extra" as "encoder_fitted_to" (None: not recorded), for the evaluation to name its fitted students
    (``evaluate_export``). ``policy_gradient`` (a ``policy_gradient.PolicyGradientConfig``; None: none): after the
    offline training, fine-tune the model by policy gradient in those simulated students (its own stage,
    "policy gradient", in the progress and the stage seconds; its settings and each round's figures in "extra"
    under "policy_gradient"; ``processes``: the worker processes of its rollouts, ``policy_gradient.fine_tune``'s).
    Raises trainer.TrainingCancelled when
    should_stop() says so, PipelineError when the model config or the dataset is refused (an attention window out of
    range: ``check_attention_window``'s message)."""
    from .rl.artifacts import CONFIG_FILE
    from .rl.checkpoint import export_artifacts
    from .rl.trainer import default_model_config, train

    check_attention_window(attention_window, architecture)
    config = replace(train_config or TRAIN_DEFAULTS, epochs=epochs, batch_size=batch_size, seed=seed, no_cuda=no_cuda)
    device = training_device(no_cuda=no_cuda)

    def progress(epoch: int, epochs_: int, step: int, steps: int, loss: float) -> None:
        _report(on_progress, "training", (epoch - 1) * steps + step, epochs_ * steps,
                epoch=epoch, loss=float(loss), device=device)

    try:
        overrides = {name: value for name, value in (("attention_window", attention_window), ("dropout", dropout))
                     if value is not None} | dict(architecture or {})
        model_config = default_model_config(dataset, **overrides) if overrides else None
        result = train(dataset=dataset, model_config=model_config, train_config=config,
                       checkpoint_path=checkpoint_path, on_progress=progress, should_stop=should_stop)
    except ValueError as exc:
        raise PipelineError(f"cannot train on this dataset: {exc}") from exc
    hardware = training_hardware(result)
    stages = {name: round(value, 2) for name, value in (stage_seconds or {}).items()} | {
        "training": hardware["training_s"]}
    tuned = {}
    if policy_gradient is not None:
        started = time.monotonic()
        tuned = {"policy_gradient": _fine_tune(result, dataset=dataset, config=policy_gradient, seed=seed,
                                               on_progress=on_progress, should_stop=should_stop,
                                               processes=processes, cpu_bfloat16=config.cpu_bfloat16)}
        stages["policy_gradient"] = round(time.monotonic() - started, 2)
    _report(on_progress, "exporting artifacts", 0, 1)
    files = export_artifacts(
        model=result.model, output_dir=output_dir, concept_keys=list(dataset.concept_keys), encoder=dataset.encoder,
        target_return=result.target_return, optimizer_state=result.optimizer_state,
        extra={"loss_history": result.loss_history, "epochs": result.epochs_completed, "batch_size": batch_size,
               "seed": seed, "device": result.device, "learning_rate": config.learning_rate,
               "lr_schedule": config.lr_schedule, "min_lr_ratio": config.min_lr_ratio, "coverage": config.coverage,
               "target_return_quantile": config.target_return_quantile,
               **{key: value for key, value in hardware.items() if key not in ("device", "training_s")},
               "stage_seconds": stages,
               **({"encoder_fitted_to": encoder_fitted_to} if encoder_fitted_to else {}), **tuned},
    )
    _report(on_progress, "exporting artifacts", 1, 1)
    written = json.loads((Path(output_dir) / CONFIG_FILE).read_text())
    return TrainOutcome(files=files, config=written, final_loss=result.final_loss, losses=list(result.loss_history),
                        device=result.device, hardware=hardware)


def policy_gradient_config(*, rounds: int | None, source: str, students_like: Any, families: Any,
                           interactions: int) -> Any:
    """The ``policy_gradient.PolicyGradientConfig`` of ``rounds`` rounds in ``families``' students, ``interactions``
    reviews each (None for 0 rounds). ``rounds`` None: the stage's default (``PolicyGradientConfig.rounds``, chosen
    on validation seeds) where it applies, synthetic data without ``students_like``, and off elsewhere
    (`train_crl_policy`'s default).
    PipelineError for negative rounds, or for rounds asked of data other than synthetic students of the named
    families (a review log's learners, or students like a curriculum's, are not simulated by those families: their
    fine-tuning would teach other students than the data's)."""
    simulated = source == TrainingRun.DataSource.SYNTHETIC and students_like is None
    if rounds is None and not simulated:
        return None
    if rounds is not None and rounds < 0:
        raise PipelineError(f"--policy-gradient-rounds must be 0 (off) or more, got {rounds}")
    if rounds == 0:
        return None
    if not simulated:
        given = {TrainingRun.DataSource.REVIEW_LOG: "--from-db (a review log)",
                 TrainingRun.DataSource.DATASET: "--dataset (a saved dataset)"}.get(source, "--students-like")
        raise PipelineError(f"--policy-gradient-rounds: policy-gradient fine-tuning simulates the training students' "
                            f"families, so it needs synthetic data without --students-like, not {given}")
    from .rl.policy_gradient import PolicyGradientConfig

    try:
        return PolicyGradientConfig(**({} if rounds is None else {"rounds": rounds}),
                                    families=parse_families(families), interactions=interactions)
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc


# What a policy-gradient round may hold of episodes (PolicyGradientConfig.episode_bytes: samples x students x
# interactions x the state's floats): 2 GiB, ~20x the default run's (4 x 256 x 100 x 80 floats, 31 MiB); at 100
# reviews a student, decks up to ~650 concepts.
POLICY_GRADIENT_EPISODE_BYTES = 2 << 30


def _fits_in_memory(config: Any, *, state_dim: int, asked: bool, progress: ProgressCallback | None) -> Any:
    """``config`` (a PolicyGradientConfig or None) when a round's episodes fit in POLICY_GRADIENT_EPISODE_BYTES for
    states of ``state_dim`` floats. Beyond: the default (``asked`` False) is off, said in the progress ("policy
    gradient" 0 of 0, info "skipped") and the log; rounds asked for raise PipelineError naming the size."""
    if config is None:
        return None
    need = config.episode_bytes(state_dim)
    if need <= POLICY_GRADIENT_EPISODE_BYTES:
        return config
    reason = (f"a round's episodes would hold {need / 2**30:.1f} GiB ({config.samples} x {config.students} students x "
              f"{config.interactions} reviews x {state_dim} state floats), over "
              f"{POLICY_GRADIENT_EPISODE_BYTES / 2**30:.0f} GiB")
    if asked:
        raise PipelineError(f"--policy-gradient-rounds: {reason}; use fewer reviews or concepts, or 0 (off)")
    logger.warning("policy-gradient stage skipped: %s", reason)
    _report(progress, "policy gradient", 0, 0, skipped=reason)
    return None


def _fine_tune(result: Any, *, dataset: TrajectoryDataset, config: Any, seed: int,
               on_progress: ProgressCallback | None, should_stop: Callable[[], bool] | None,
               processes: int | str = AUTO, cpu_bfloat16: bool | None = None) -> dict[str, Any]:
    """``train_and_export``'s policy-gradient stage on ``result.model`` (the trainer returns it on the CPU, where the
    stage runs, also after a CUDA training): progress "policy gradient" round by round, trainer.TrainingCancelled
    when should_stop() says so after a round.
    ``cpu_bfloat16``: the offline recipe's (TrainConfig.cpu_bfloat16: `--cpu-float32` / `--cpu-bfloat16` reach the
    stage's gradient steps too). Returns what the export records: the settings, the gradient's dtype and each round's
    figures."""
    from dataclasses import asdict

    from .rl.policy_gradient import fine_tune
    from .rl.trainer import TrainingCancelled, training_autocast, training_dtype

    model = result.model  # on the CPU, in eval mode

    def on_round(round_: int, figures: dict[str, Any], _lite: Any) -> None:
        _report(on_progress, "policy gradient", round_, config.rounds, sampled_return=figures["sampled_return"])
        if should_stop is not None and should_stop():
            raise TrainingCancelled("stopped during the policy-gradient fine-tuning")

    _report(on_progress, "policy gradient", 0, config.rounds)
    history = fine_tune(model, concept_keys=list(dataset.concept_keys), encoder=dataset.encoder,
                        target_return=result.target_return, config=config, seed=seed, on_round=on_round,
                        processes=processes, autocast=training_autocast("cpu", cpu_bfloat16=cpu_bfloat16))
    return {**asdict(config), "families": list(config.families),
            "dtype": training_dtype("cpu", cpu_bfloat16=cpu_bfloat16), "rounds_figures": history}


# ----------------------------------------------------------------------------------------- evaluation
def evaluate_export(
    *, output_dir: str | os.PathLike, students: int = EVALUATION_STUDENTS, seed: int = EVALUATION_SEED,
    interactions: int = EVALUATION_INTERACTIONS,
    on_progress: ProgressCallback | None = None, students_like: StudentsLike | None = None,
    families: str | tuple[str, ...] | None = None, with_fitted: bool = True, processes: int | str = AUTO,
) -> dict[str, Any]:
    """Closed-loop evaluation of the DTLite policy in output_dir against the baselines (evaluate_policy's JSON):
    the built-in students in "results", the fitted students in "students_like" (``students_like``, else those the
    policy's fitted FSRS-6 encoder describes; absent when neither exists), and one block per student family in
    "families" (``families``, default EVALUATION_FAMILIES; () for none; "fitted" added when those students exist,
    unless ``with_fitted`` is False). ValueError naming an unknown family or a number of ``processes`` that is
    neither "auto" nor a positive integer.

    With "students_like", "students_like_fitted_to" says what their FSRS-6 was fitted to when that is known:
    FITTED_TO_REVIEW_LOG for ``students_like`` (``students_like_curriculum``: a curriculum's log), else the policy's
    record (dt_lite_config.json's extra "encoder_fitted_to", ``train_and_export``): FITTED_TO_SIMULATED_PILOT after
    synthetic training, whose encoder was fitted to the simulated pilot (students like the training cohort, not like
    a review log); absent for a policy exported before the record.

    Cost: one closed loop per policy and family; the DT's dominates (~40 s for 200 students x 100 reviews on a
    loaded 2-core machine, the baselines' ~0.5 s), so each family adds about one DT run. The loops go to
    ``processes`` worker processes ("auto": one per core; see ``evaluation.evaluate``), so on as many cores as
    families they take about one DT run in all."""
    from .rl.artifacts import CONFIG_FILE, WEIGHTS_FILE, ArtifactError
    from .rl.dtlite import DTLite
    from .rl.evaluation import closed_loop_count, evaluate

    directory = Path(output_dir)
    try:
        model = DTLite.load(directory / WEIGHTS_FILE, directory / CONFIG_FILE)
    except (ArtifactError, OSError) as exc:
        raise PipelineError(f"cannot load the policy in {directory}: {exc}") from exc

    def progress(done: int, total: int, name: str) -> None:
        _report(on_progress, "evaluating", done, total, policy=name)

    families = EVALUATION_FAMILIES if families is None else parse_families(families) if families else ()
    fitted = students_like is not None or StudentsLike.from_encoder(model.config.get("encoder")) is not None
    if families and with_fitted and fitted and FITTED not in families:
        families = (*families, FITTED)
    # the whole count from the start (every population's loops: the built-in students, the fitted ones, each
    # family), not one population's: the first report stands until the first loop, the DT's, ends (a minute or more)
    _report(on_progress, "evaluating", 0, closed_loop_count(policy=True, fitted=fitted, families=families or None))
    metrics = evaluate(policy=model, num_concepts=int(model.config["action_dim"]), students=students,
                       interactions=interactions, seed=seed, concept_keys=list(model.config["concept_keys"]),
                       students_like=students_like, on_progress=progress, families=families or None,
                       processes=processes)
    extra = model.config.get("extra") if isinstance(model.config.get("extra"), dict) else {}
    fitted_to = FITTED_TO_REVIEW_LOG if students_like is not None else extra.get("encoder_fitted_to")
    if "students_like" in metrics and fitted_to:
        metrics["students_like_fitted_to"] = fitted_to
    return metrics


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
    # wall time per stage: extraction (for an extracted dataset, its extraction job's, which ran before the run),
    # data (getting the data in the run: simulating, extracting, or loading the dataset), training, evaluation, and
    # total (the run's own: without the extraction job's)
    seconds: dict[str, float] = field(default_factory=dict)
    # training_hardware() plus "seconds": the wall time per stage, as above
    hardware: dict[str, Any] = field(default_factory=dict)


def train_policy(
    *, spec: TrainingSpec, output_dir: str | os.PathLike, source: str = TrainingRun.DataSource.SYNTHETIC,
    curriculum: Curriculum | str | None = None, dataset: TrajectoryExtractionJob | None = None,
    progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
    students_like: Curriculum | str | None = None, eval_processes: int | str = AUTO,
    attention_window: int | None = None, train_config: TrainConfig | None = None,
    policy_gradient_rounds: int | None = 0,
) -> PolicyResult:
    """Data -> trajectories -> DT -> artifacts in output_dir -> closed-loop evaluation (evaluation.json).

    The evaluation runs under the curriculum's evaluation protocol (``Curriculum.protocol``) when the policy
    serves a curriculum (a curriculum without one and without versions takes ``spec.eval_students`` /
    ``spec.interactions`` as its protocol), else under those; ``metrics["protocol"]`` says which.

    The training half of ``training.services.train_and_register`` (for `train_crl_policy` and the training
    runs). ``source``:

    * "synthetic": simulated students. With a ``curriculum`` (object or key) its concepts are the actions (a
      missing curriculum, given by key, is created with c00, c01, ...; ``spec.concepts`` must be None or equal
      its concept count: TrainingSpec.concept_count); without one, ``spec.concepts`` (default DEFAULT_CONCEPTS)
      keys "0", "1", ...
    * "review_log": the curriculum's ReviewLog, extracted now (``curriculum`` required).
    * "dataset": a succeeded TrajectoryExtractionJob's saved dataset (``dataset`` required); it serves the
      dataset's curriculum. Its extraction job's seconds (``extraction_seconds``) are recorded as the stage
      "extraction" before "data" (loading the dataset) in ``PolicyResult.seconds`` and the config's
      "stage_seconds", outside the run's "total": the extraction ran before the run, as its own job, and a dataset
      may serve several runs.

    ``progress(stage, done, total, info)`` as the stages go; ``should_stop()`` is asked at each stage boundary
    and each training step: when it says so, trainer.TrainingCancelled is raised. Registration and promotion
    are the caller's (training.services). Raises PipelineError naming the parameter for inputs it refuses.

    ``students_like`` (a curriculum or its key): synthetic training students and the evaluation's "students_like"
    population follow FSRS-6 fitted to that curriculum's log (``students_like_curriculum``); the built-in students
    are still evaluated in "results". ``eval_processes``: the evaluation's worker processes (``evaluate_export``), and
    the policy-gradient stage's rollouts'.
    The exported config records what the encoder was fitted to (extra "encoder_fitted_to": the simulated pilot for
    synthetic data, the curriculum's review log otherwise), so that every later evaluation of the version names its
    fitted students truly ("students_like_fitted_to", ``evaluate_export``).

    ``attention_window``: the model's local attention window in tokens (DTConfig.attention_window; None: the
    widest exact window, ``trainer.default_model_config``'s default; 0: full attention), checked against the
    default architecture before any work. ``train_config``: the trainer's recipe
    (learning rate, its schedule, coverage...; None: TRAIN_DEFAULTS), whose epochs, batch size, seed and no_cuda
    are the spec's.

    ``policy_gradient_rounds`` > 0: after the offline training, that many rounds of policy-gradient fine-tuning in
    the training cohort's student families (``spec.families``; ``policy_gradient.PolicyGradientConfig``'s other
    settings, chosen on validation seeds: bench/README.md ``policy_gradient.py``); synthetic data without
    ``students_like`` only (PipelineError otherwise: the simulated students must be the training data's own).
    None: the stage's default number of rounds where it applies, off elsewhere (``policy_gradient_config``).
    """
    from .rl.trainer import TrainingCancelled

    def boundary() -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled("stopped between the pipeline's stages")

    try:
        spec.validate()
    except ValueError as exc:
        raise PipelineError(str(exc)) from exc
    check_attention_window(attention_window)  # before any work
    if source not in DATA_SOURCES:
        raise PipelineError(f"source: expected one of {', '.join(DATA_SOURCES)}, got {source!r}")
    policy_gradient = policy_gradient_config(rounds=policy_gradient_rounds, source=source,
                                             students_like=students_like, families=spec.families,
                                             interactions=spec.interactions)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    students = None if students_like is None else students_like_curriculum(curriculum=students_like)
    dataset_data, curriculum = _training_data(spec=spec, source=source, curriculum=curriculum, dataset=dataset,
                                              progress=progress, students_like=students)
    stats = dataset_statistics(dataset_data)
    if source == TrainingRun.DataSource.DATASET:
        # its extraction job made the dataset before this run: a stage of its own, outside this run's total
        seconds["extraction"] = extraction_seconds(dataset)
    seconds["data"] = time.monotonic() - started
    boundary()
    policy_gradient = _fits_in_memory(policy_gradient, state_dim=dataset_data.state_dim,
                                      asked=policy_gradient_rounds is not None, progress=progress)

    output = Path(output_dir)
    stage = time.monotonic()
    # what the encoder was fitted to: synthetic data's to the simulated pilot (build_synthetic_dataset), a review
    # log's and an extracted dataset's to the curriculum's review log
    synthetic = source == TrainingRun.DataSource.SYNTHETIC
    fitted_to = FITTED_TO_SIMULATED_PILOT if synthetic else FITTED_TO_REVIEW_LOG
    with tempfile.TemporaryDirectory(prefix="crl-train-") as tmp:
        # The training checkpoint (with the optimizer, for resuming) stays apart from the exported dt_model.pt.
        outcome = train_and_export(dataset=dataset_data, output_dir=output, epochs=spec.epochs,
                                   batch_size=spec.batch_size, seed=spec.seed, no_cuda=spec.no_cuda,
                                   checkpoint_path=Path(tmp) / "train_checkpoint.pt", on_progress=progress,
                                   should_stop=should_stop, stage_seconds=dict(seconds),
                                   attention_window=attention_window, train_config=train_config,
                                   encoder_fitted_to=fitted_to, policy_gradient=policy_gradient,
                                   processes=eval_processes)
    del dataset_data
    seconds["training"] = time.monotonic() - stage
    # the policy-gradient stage ran inside train_and_export: its own line, not the offline training's
    tuned_s = (outcome.config.get("extra") or {}).get("stage_seconds", {}).get("policy_gradient")
    if tuned_s is not None:
        seconds["policy_gradient"] = float(tuned_s)
        seconds["training"] -= float(tuned_s)
    boundary()
    stage = time.monotonic()
    # Every version of a curriculum is evaluated under the curriculum's protocol (the same held-out students,
    # seed and reviews per student), whatever data it was trained on, so that versions compare; without a
    # curriculum the spec's evaluation settings, recorded the same way.
    protocol = EvaluationProtocol(students=spec.eval_students, seed=EVALUATION_SEED, interactions=spec.interactions)
    if curriculum is not None:  # a curriculum's first protocol is sized from its deck: every concept is met
        protocol = evaluation_protocol_for(
            curriculum=curriculum, proposed=protocol.sized_for(num_concepts=int(outcome.config["action_dim"])))
    # every run is evaluated on every family (and on the fitted students), the ones it never trained on included
    # (issue 21): a family costs one more DT closed loop, about a second or two at the default sizes since the loop
    # runs DTLite step by step
    trained_on = parse_families(spec.families)
    metrics = evaluate_export(output_dir=output, students=protocol.students, seed=protocol.seed,
                              interactions=protocol.interactions, on_progress=progress,
                              students_like=students, processes=eval_processes,
                              families=(*EVALUATION_FAMILIES, *(
                                  name for name in trained_on if name not in EVALUATION_FAMILIES)))
    metrics["protocol"] = protocol.to_dict()
    # what the policy was learned from, and whether it is enough (warned on the run, the command, the orchestrator)
    metrics["training_data"] = training_data_summary(statistics=stats, concepts=int(outcome.config["action_dim"]))
    seconds["evaluation"] = time.monotonic() - stage
    (output / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    seconds["total"] = time.monotonic() - started
    return PolicyResult(curriculum=curriculum, output_dir=output, files=outcome.files, config=outcome.config,
                        metrics=metrics, final_loss=outcome.final_loss, losses=outcome.losses, device=outcome.device,
                        dataset_stats=stats, seconds=seconds,
                        hardware={**outcome.hardware, "seconds": {k: round(v, 2) for k, v in seconds.items()}})


EVALUATION_FILE = "evaluation.json"


def extraction_seconds(job: TrajectoryExtractionJob) -> float:
    """The seconds an extraction job ran (claimed to finished: reading the log, extracting, saving the dataset);
    0.0 when it has no start or end time recorded."""
    if job.started_at is None or job.finished_at is None:
        return 0.0
    return max((job.finished_at - job.started_at).total_seconds(), 0.0)


def _training_data(
    *, spec: TrainingSpec, source: str, curriculum: Curriculum | str | None, dataset: TrajectoryExtractionJob | None,
    progress: ProgressCallback | None, students_like: StudentsLike | None = None,
) -> tuple[TrajectoryDataset, Curriculum | None]:
    """The trajectory dataset for ``source`` and the curriculum the policy will serve."""
    curriculum = _served_curriculum(spec=spec, source=source, curriculum=curriculum, dataset=dataset)
    keys = None if curriculum is None else policy_concept_keys(curriculum=curriculum, spec=spec)  # before the work
    if source == TrainingRun.DataSource.DATASET:
        _report(progress, "loading the dataset", 0, 1)
        data = load_extracted_dataset(job=dataset)
        _report(progress, "loading the dataset", 1, 1)
        return data, curriculum
    if source == TrainingRun.DataSource.REVIEW_LOG:
        return build_dataset_from_reviews(curriculum=curriculum, on_progress=progress, keys=keys), curriculum
    concepts = len(keys) if keys else spec.concept_count(curriculum=None, have=0)
    data = build_synthetic_dataset(num_users=spec.num_users, interactions=spec.interactions, concepts=concepts,
                                   seed=spec.seed, concept_keys=keys, on_progress=progress,
                                   students_like=students_like, families=spec.families)
    return data, curriculum


def _served_curriculum(
    *, spec: TrainingSpec, source: str, curriculum: Curriculum | str | None, dataset: TrajectoryExtractionJob | None,
) -> Curriculum | None:
    """The curriculum the policy will serve: the dataset's, the one given (by key: it must exist, but for synthetic
    data, which makes a missing one with c00, c01, ..., as it gives concepts to one that has none), or None for
    synthetic data without one. PipelineError naming what is missing."""
    if source == TrainingRun.DataSource.DATASET:
        if dataset is None:
            raise PipelineError("dataset: training on an extracted dataset needs the extraction job (--dataset)")
        if dataset.status != TrainingRun.Status.SUCCEEDED or not dataset.dataset_path:
            raise PipelineError(f"dataset: {dataset} has not succeeded (it is {dataset.status})")
        return dataset.curriculum
    key = curriculum if isinstance(curriculum, str) or curriculum is None else curriculum.key
    if isinstance(curriculum, str):
        curriculum = Curriculum.objects.filter(key=key).first()
    if source == TrainingRun.DataSource.REVIEW_LOG:
        if key is None:
            raise PipelineError("--from-db needs --curriculum KEY (whose ReviewLog to train on)")
        if curriculum is None:
            raise PipelineError(f"no curriculum {key!r} (import reviews into it first)")
        return curriculum
    if key is None:
        return None
    if curriculum is None or not curriculum.concepts.exists():
        count = spec.concept_count(curriculum=key, have=0)
        curriculum = ensure_curriculum(key=key, concept_keys=synthetic_concept_keys(count))
    return curriculum


def policy_concept_keys(*, curriculum: Curriculum, spec: TrainingSpec | None = None) -> list[str]:
    """The concept keys a policy for ``curriculum`` acts on, in action (position) order: the one check of a run's
    concepts. PipelineError when ``spec.concepts`` is neither None nor the curriculum's count
    (TrainingSpec.concept_count, naming --concepts) or when the curriculum has fewer than 2 concepts."""
    keys = list(concept_keys(curriculum_id=curriculum.pk))
    if spec is not None:
        try:
            spec.concept_count(curriculum=curriculum.key, have=len(keys))
        except ValueError as exc:
            raise PipelineError(f"--concepts {spec.concepts}: {exc}") from None
    if len(keys) < 2:
        raise PipelineError(f"curriculum {curriculum.key!r} has {len(keys)} concepts; a policy needs at least 2")
    return keys


def load_extracted_dataset(*, job: TrajectoryExtractionJob) -> TrajectoryDataset:
    """The TrajectoryDataset an extraction job saved (read through the storage API, via a temporary file)."""
    from .rl.dataset_file import load_dataset

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
