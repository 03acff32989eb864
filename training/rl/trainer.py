"""Training loop for the Decision Transformer on a TrajectoryDataset (PyTorch).

Windows of `context_length` steps are sampled from the episodes, the action at each valid position is
predicted with cross-entropy, and a resumable `dt_model.pt` checkpoint is written after every epoch.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.rl.artifacts import FORMAT_VERSION
from training.rl.batches import BatchBuilder, draw_window_ends
from training.rl.checkpoint import read_checkpoint, write_checkpoint
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.model_config import SUMMARY_FEATURES_PER_CONCEPT, concept_head_fits, max_attention_window
from training.rl.trajectories import TrajectoryDataset


BATCH_BUILDERS = ("device", "numpy")  # TrainConfig.batch_builder
LR_SCHEDULES = ("constant", "cosine")  # TrainConfig.lr_schedule


class TrainingCancelled(Exception):
    """should_stop() asked training to stop; the last epoch checkpoint (if any) is kept for resuming."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int | None = None  # linear warm-up, then lr_schedule; None: one epoch
    # after the warm-up: "constant" (the original DT) or "cosine", half a cosine from learning_rate down to
    # min_lr_ratio x learning_rate at the last step (Loshchilov & Hutter 2017, SGDR, without restarts)
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.25
    # An epoch is ceil(windows_per_epoch / batch_size) optimizer steps. None: coverage * N / context_length
    # windows for N dataset steps, i.e. each step is, on average, the target `coverage` times per epoch.
    windows_per_epoch: int | None = None
    coverage: float = 2.0
    seed: int = 42
    no_cuda: bool = False
    # the return-to-go used at inference: this quantile of the dataset's episode returns (in-distribution
    # but ambitious; the max is often one lucky episode)
    target_return_quantile: float = 0.9
    progress_every: int = 10  # steps between on_progress calls (and always at an epoch's end)
    num_threads: int | None = None  # torch.set_num_threads; None leaves the caller's setting alone
    # CPU only: the forward pass under bfloat16 autocast (torch.autocast("cpu"); weights, gradients and the
    # optimiser stay float32; the concept head's blocks and the loss in float32). None (the default): when the CPU
    # has bfloat16 matrix units (cpu_has_bfloat16_units: Intel AMX, AVX512-BF16), float32 otherwise; True / False
    # force it. CUDA always trains under bfloat16 autocast.
    cpu_bfloat16: bool | None = None
    # "device": batches built on the training device from tensors held there (batches.BatchBuilder); "numpy":
    # sample_windows on the host, copied per step (the reference; the same batches for a seed)
    batch_builder: str = "device"

    def steps_per_epoch(self, *, num_steps: int, context_length: int) -> int:
        windows = self.windows_per_epoch or math.ceil(self.coverage * num_steps / context_length)
        return max(1, math.ceil(windows / self.batch_size))


@dataclass
class TrainResult:
    model: DecisionTransformer  # eval mode, on the CPU
    loss_history: list[float]  # mean training loss per epoch
    final_loss: float
    target_return: float
    device: str
    epochs_completed: int
    steps_per_epoch: int
    resumed_from_epoch: int  # 0 when training started from scratch
    seconds: float  # wall time of this call
    optimizer_state: dict[str, Any] = field(repr=False, default_factory=dict)
    device_name: str = "cpu"  # "cpu" or the GPU's name (torch.cuda.get_device_name)
    dtype: str = "float32"  # the arithmetic of the forward pass: "float32", or "bfloat16 autocast" on CUDA
    optimizer_steps: int = 0  # optimiser steps taken by this call (a resumed run counts only its own)
    steps_per_second: float = 0.0  # optimiser_steps / the wall time of the training loop (batches included)


ProgressCallback = Callable[[int, int, int, int, float], None]


def learning_rate_factor(config: TrainConfig, *, warmup: int, total: int) -> Callable[[int], float]:
    """The multiplier of ``config.learning_rate`` before optimiser step s (0-based), for LambdaLR: linear warm-up
    over ``warmup`` steps ((s + 1) / warmup), then 1 ("constant") or, for "cosine", min_lr_ratio + (1 -
    min_lr_ratio) x (1 + cos(pi x p)) / 2 with p = (s + 1 - warmup) / (total - warmup) in [0, 1] (``total``: the
    run's optimiser steps, epochs x steps per epoch). ValueError naming lr_schedule for another name."""
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train_config.lr_schedule: expected one of {', '.join(LR_SCHEDULES)}, got "
                         f"{config.lr_schedule!r}")
    floor, decay = config.min_lr_ratio, max(1, total - warmup)

    def factor(s: int) -> float:
        if s + 1 < warmup or config.lr_schedule == "constant":
            return min((s + 1) / warmup, 1.0)
        progress = min(1.0, (s + 1 - warmup) / decay)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def check_dataset(dataset: TrajectoryDataset) -> None:
    """Raise ValueError naming the field unless the dataset's arrays are consistent."""
    n = len(dataset.actions)
    if n == 0:
        raise ValueError("dataset is empty: no steps to train on")
    held = dataset.stored_states
    if held is not None and (held.ndim != 2 or len(held) != n):
        raise ValueError(f"dataset.states must be [N={n}, S], got shape {held.shape}")
    for name in ("rewards", "returns_to_go", "timesteps"):
        if np.shape(getattr(dataset, name)) != (n,):
            raise ValueError(f"dataset.{name} must be [N={n}], got shape {np.shape(getattr(dataset, name))}")
    starts = np.asarray(dataset.episode_starts)
    if starts.ndim != 1 or len(starts) < 2 or starts[0] != 0 or starts[-1] != n or np.any(np.diff(starts) < 0):
        raise ValueError(f"dataset.episode_starts must rise from 0 to N={n}, got {starts[:5]}...")
    if dataset.actions.min() < 0:
        raise ValueError("dataset.actions must be >= 0")


def training_device(*, no_cuda: bool) -> str:
    """Where training runs: CUDA when there is a GPU, unless no_cuda."""
    return "cuda" if torch.cuda.is_available() and not no_cuda else "cpu"


def device_name(device: str) -> str:
    """What a person calls the device: "cpu", or the GPU's name (e.g. "NVIDIA H200") for "cuda"."""
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX tiles or AVX512-BF16), as PyTorch's
    own checks (``torch.cpu._is_amx_tile_supported``, ``_is_avx512_bf16_supported``) say; False where this PyTorch
    has no such check. Elsewhere bfloat16 autocast is emulated and slower than float32."""
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def uses_cpu_bfloat16(cpu_bfloat16: bool | None) -> bool:
    """TrainConfig.cpu_bfloat16 resolved: None -> cpu_has_bfloat16_units(); True / False as given."""
    return cpu_has_bfloat16_units() if cpu_bfloat16 is None else bool(cpu_bfloat16)


def training_dtype(device: str, *, cpu_bfloat16: bool | None = False) -> str:
    """The forward pass's arithmetic on the device: bfloat16 autocast on CUDA (weights and optimiser in
    float32), on the CPU float32 or, with ``cpu_bfloat16`` (TrainConfig's; None: where the CPU has bfloat16
    matrix units), bfloat16 autocast; what ``train`` uses and records."""
    if device.startswith("cuda") or (device == "cpu" and uses_cpu_bfloat16(cpu_bfloat16)):
        return "bfloat16 autocast"
    return "float32"


def training_autocast(device: str, *, cpu_bfloat16: bool | None = False) -> contextlib.AbstractContextManager:
    """The autocast context of ``train``'s forward pass (see training_dtype): torch.autocast(device, bfloat16)
    on CUDA, and on the CPU with ``cpu_bfloat16`` (None: where the CPU has bfloat16 matrix units); a null context
    otherwise."""
    if training_dtype(device, cpu_bfloat16=cpu_bfloat16) != "float32":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_model_config(dataset: TrajectoryDataset, **overrides: Any) -> DTConfig:
    """DTConfig for a dataset: its dimensions, DTConfig's default size, return_scale from the data, local attention
    over the widest exact window (``model_config.max_attention_window``: 30 tokens at context 20 and 2 layers, so
    that DTLite serves a learner step by step), and, when the encoder's states are per-concept feature groups (they
    are for StateEncoder), the concept head and the fixed-size summary state token (so the transformer's cost does
    not grow with the number of concepts). ``overrides``: DTConfig fields; ``attention_window`` None or absent is
    the widest exact window, 0 full attention (the original DT). ValueError from DTConfig for a field it refuses."""
    window = overrides.pop("attention_window", None)
    if window is None:
        window = max_attention_window(
            context_length=overrides.get("context_length", DTConfig.context_length),
            num_layers=overrides.get("num_layers", DTConfig.num_layers))
    overrides["attention_window"] = window or None  # 0: full attention
    state_dim = dataset.state_dim
    action_dim = max(len(dataset.concept_keys), int(dataset.actions.max()) + 1)
    per_concept = len(dataset.encoder.get("features") or ())
    if concept_head_fits(state_dim=state_dim, action_dim=action_dim, concept_features=per_concept):
        overrides.setdefault("concept_features", per_concept)
        if per_concept == SUMMARY_FEATURES_PER_CONCEPT:
            overrides.setdefault("state_token", "summary")
    config = DTConfig(state_dim=state_dim, action_dim=action_dim, **overrides)
    return resolve_model_config(config, dataset)


def resolve_model_config(config: DTConfig, dataset: TrajectoryDataset) -> DTConfig:
    if config.state_dim != dataset.state_dim:
        raise ValueError(f"model_config.state_dim is {config.state_dim} but the dataset's states have "
                         f"{dataset.state_dim} features")
    if int(dataset.actions.max()) >= config.action_dim:
        raise ValueError(f"dataset.actions go up to {int(dataset.actions.max())} but model_config.action_dim "
                         f"is {config.action_dim}")
    if config.return_scale is None:
        # returns-to-go enter the model in [-1, 1]
        scale = float(np.abs(dataset.returns_to_go).max())
        config = replace(config, return_scale=scale if scale > 0 else 1.0)
    return config


def target_return(dataset: TrajectoryDataset, *, quantile: float) -> float:
    starts = np.asarray(dataset.episode_starts)
    first_rows = starts[:-1][np.diff(starts) > 0]  # skip empty episodes
    return float(np.quantile(dataset.returns_to_go[first_rows], quantile))


def sample_windows(
    dataset: TrajectoryDataset, *, rng: np.random.Generator, batch_size: int, context_length: int
) -> dict[str, np.ndarray]:
    """A batch of windows [B, K] ending at uniformly drawn steps, left-padded where the episode starts later.

    Every step is equally likely to end a window, so early steps are trained with the short, padded
    contexts they will have at inference. The states are computed here, for the drawn rows only
    (``dataset.state_rows``: rebuilt from review rows for extracted datasets). The NumPy reference of
    batches.BatchBuilder, which builds the same batch on the training device (TrainConfig.batch_builder).
    """
    K = context_length
    starts = np.asarray(dataset.episode_starts)
    ends = draw_window_ends(rng, num_steps=len(dataset.actions), batch_size=batch_size)  # [B]
    episode_start = starts[np.searchsorted(starts, ends, side="right") - 1]  # [B]
    rows = ends[:, None] - (K - 1) + np.arange(K)  # [B, K]
    valid = rows >= episode_start[:, None]
    rows = np.where(valid, rows, ends[:, None])  # any in-range row; padded values are zeroed below
    batch = {
        "returns_to_go": dataset.returns_to_go[rows].astype(np.float32, copy=False),
        "states": dataset.state_rows(rows).astype(np.float32, copy=False),
        "actions": dataset.actions[rows].astype(np.int64, copy=False),
        "timesteps": dataset.timesteps[rows].astype(np.int64, copy=False),
    }
    for value in batch.values():
        value[~valid] = 0
    batch["attention_mask"] = valid.astype(np.int64)
    return batch


def optimisation_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], *,
                      autocast: contextlib.AbstractContextManager, grad_clip: float) -> torch.Tensor:
    """One optimiser step of the Decision Transformer's behaviour-cloning loss (Chen et al. 2021): cross-entropy of
    the logits at every valid state token (``batch["attention_mask"]`` 1) against the action taken there, under
    ``autocast`` (the loss in float32), gradients clipped to ``grad_clip`` in global norm. ``batch``: BatchBuilder's
    tensors (returns_to_go [B, K], states [B, K, S], actions [B, K], timesteps [B, K], attention_mask [B, K]). Returns
    the loss, detached (a 0-d tensor on the model's device: no synchronisation here)."""
    with autocast:
        logits = model(batch["returns_to_go"], batch["states"], batch["actions"], batch["timesteps"],
                       batch["attention_mask"])  # [B, K, A]
    valid = batch["attention_mask"].bool()
    loss = F.cross_entropy(logits[valid].float(), batch["actions"][valid])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


def dataset_fingerprint(dataset: TrajectoryDataset) -> str:
    """Identifies the data a checkpoint was trained on, so a resume never mixes two datasets."""
    h = hashlib.sha256()
    rs = dataset.review_states
    held = (dataset.stored_states,) if rs is None else (rs.t, rs.snapshot_rows, rs.snapshots, *(
        rs.memory[name] for name in sorted(rs.memory)))
    for array in (*held, dataset.actions, dataset.returns_to_go, dataset.timesteps, dataset.episode_starts):
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _rng_states(rng: np.random.Generator, device: str) -> dict[str, torch.Tensor]:
    # tensors only, so the checkpoint loads with weights_only=True; numpy's state is a dict of big ints
    states = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor(list(json.dumps(rng.bit_generator.state).encode()), dtype=torch.uint8),
    }
    if device == "cuda":
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _restore_rng_states(states: dict[str, torch.Tensor], rng: np.random.Generator, device: str) -> None:
    torch.set_rng_state(states["torch"])
    rng.bit_generator.state = json.loads(bytes(states["numpy"].tolist()).decode())
    if device == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"])


# train_config fields that must match for a resumed run to continue the same trajectory (epochs may grow)
_RESUME_FIELDS = ("batch_size", "learning_rate", "weight_decay", "warmup_steps", "grad_clip",
                  "windows_per_epoch", "coverage", "seed", "target_return_quantile", "lr_schedule", "min_lr_ratio")


def _check_resumable(checkpoint: dict[str, Any], *, path: Path, model_config: DTConfig,
                     train_config: TrainConfig, fingerprint: str) -> None:
    if "epoch" not in checkpoint:
        raise ValueError(f"{path}: not a training checkpoint (no 'epoch'); pass resume=False or another path")
    if checkpoint.get("dataset_fingerprint") != fingerprint:
        raise ValueError(f"{path}: written for a different dataset; pass resume=False to start again")
    if checkpoint["config"] != asdict(model_config):
        raise ValueError(f"{path}: written for model config {checkpoint['config']}, not {asdict(model_config)}")
    for name in _RESUME_FIELDS:
        if checkpoint["train_config"].get(name) != getattr(train_config, name):
            raise ValueError(f"{path}: written with train_config.{name}={checkpoint['train_config'].get(name)!r}, "
                             f"not {getattr(train_config, name)!r}")


def train(
    *,
    dataset: TrajectoryDataset,
    model_config: DTConfig | None = None,
    train_config: TrainConfig | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a Decision Transformer; deterministic for a seed on the CPU.

    model_config None: `default_model_config(dataset)`; a given one whose return_scale is None gets it
    from the data. on_progress(epoch, epochs, step, steps, loss): epoch 1-based, step 1-based within the
    epoch, loss the epoch's running mean. should_stop() is polled before every step; when it returns True,
    TrainingCancelled is raised. With checkpoint_path, a checkpoint is written after each epoch and, with
    resume, training continues from the one found there.
    """
    started = time.monotonic()
    train_config = train_config or TrainConfig()
    check_dataset(dataset)
    model_config = (default_model_config(dataset) if model_config is None
                    else resolve_model_config(model_config, dataset))
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    device = training_device(no_cuda=train_config.no_cuda)
    autocast = training_autocast(device, cpu_bfloat16=train_config.cpu_bfloat16)
    goal = target_return(dataset, quantile=train_config.target_return_quantile)
    fingerprint = dataset_fingerprint(dataset)
    steps = train_config.steps_per_epoch(num_steps=len(dataset.actions), context_length=model_config.context_length)
    warmup = train_config.warmup_steps or steps

    if train_config.batch_builder not in BATCH_BUILDERS:
        raise ValueError(f"train_config.batch_builder: expected one of {', '.join(BATCH_BUILDERS)}, got "
                         f"{train_config.batch_builder!r}")
    builder = (BatchBuilder(dataset, context_length=model_config.context_length, device=device, reuse_states=True)
               if train_config.batch_builder == "device" else None)

    def next_batch() -> dict[str, torch.Tensor]:
        if builder is not None:
            return builder.batch(draw_window_ends(rng, num_steps=builder.num_steps, batch_size=train_config.batch_size))
        return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in sample_windows(
            dataset, rng=rng, batch_size=train_config.batch_size, context_length=model_config.context_length).items()}

    torch.manual_seed(train_config.seed)
    rng = np.random.default_rng(train_config.seed)
    model = DecisionTransformer(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.learning_rate,
                                  weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(
        train_config, warmup=warmup, total=steps * train_config.epochs))
    loss_history: list[float] = []
    start_epoch = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        checkpoint = read_checkpoint(path)
        _check_resumable(checkpoint, path=path, model_config=model_config, train_config=train_config,
                         fingerprint=fingerprint)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _restore_rng_states(checkpoint["rng"], rng, device)
        loss_history = list(checkpoint["loss_history"])
        start_epoch = checkpoint["epoch"]

    # CPU kernels are deterministic already; this guards against a nondeterministic one being picked.
    # On CUDA it would need CUBLAS_WORKSPACE_CONFIG set process-wide, so it is left off there.
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    loop_started, steps_taken = time.monotonic(), 0
    try:
        for epoch in range(start_epoch, train_config.epochs):
            model.train()
            total = torch.zeros((), device=device)
            for step in range(steps):
                if should_stop is not None and should_stop():
                    raise TrainingCancelled(f"training cancelled at epoch {epoch + 1}, step {step + 1}")
                loss = optimisation_step(model, optimizer, next_batch(), autocast=autocast,
                                         grad_clip=train_config.grad_clip)
                scheduler.step()
                steps_taken += 1
                total += loss
                if on_progress is not None and ((step + 1) % train_config.progress_every == 0 or step + 1 == steps):
                    on_progress(epoch + 1, train_config.epochs, step + 1, steps, total.item() / (step + 1))
            loss_history.append(total.item() / steps)
            if path is not None:
                write_checkpoint(path, {
                    "format_version": FORMAT_VERSION,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "config": asdict(model_config),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "loss_history": loss_history,
                    "train_config": asdict(train_config),
                    "target_return": goal,
                    "dataset_fingerprint": fingerprint,
                    "rng": _rng_states(rng, device),
                })
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])

    loop_seconds = time.monotonic() - loop_started  # the last loss.item() has waited for the device
    model = model.cpu().eval()
    return TrainResult(
        model=model,
        loss_history=loss_history,
        final_loss=loss_history[-1] if loss_history else float("nan"),
        target_return=goal,
        device=device,
        epochs_completed=max(start_epoch, train_config.epochs) if loss_history else 0,
        steps_per_epoch=steps,
        resumed_from_epoch=start_epoch,
        seconds=time.monotonic() - started,
        optimizer_state=optimizer.state_dict(),
        device_name=device_name(device),
        dtype=training_dtype(device, cpu_bfloat16=train_config.cpu_bfloat16),
        optimizer_steps=steps_taken,
        steps_per_second=steps_taken / loop_seconds if steps_taken and loop_seconds > 0 else 0.0,
    )
