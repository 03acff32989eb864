"""`dt_model.pt`, the PyTorch checkpoint of a policy version, and the export of a trained model's files.

The checkpoint holds tensors and plain Python types only, so that it loads with ``torch.load(weights_only=True)``;
the trainer writes one after every epoch (to resume) and `export_artifacts` the final one beside the DTLite pair
(whose format is artifacts.py's). This module and dt.py/trainer.py are the only parts of the learning core that
import torch; serving never imports it.
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from .artifacts import (
    CHECKPOINT_FILE, CONFIG_FILE, FORMAT_VERSION, ONNX_FILE, WEIGHTS_FILE, ArtifactError, Source, dtlite_files,
    read_bytes, sha256_hex, write_atomic,
)
from .onnx_export import onnx_available, onnx_bytes


class ExportableModel(Protocol):
    """What export needs of a model (DecisionTransformer has it): its config as plain Python types, its tensors."""

    def checkpoint_config(self) -> dict[str, Any]: ...

    def state_dict(self) -> Mapping[str, torch.Tensor]: ...


def write_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> str:
    """Write a `dt_model.pt` checkpoint (tensors and plain Python types only) atomically; return its SHA-256."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    write_atomic(Path(path), data)
    return sha256_hex(data)


def read_checkpoint(source: Source) -> dict[str, Any]:
    """A `dt_model.pt` checkpoint, on the CPU, through torch's weights-only unpickler.

    Raises ArtifactError naming the file when it cannot be loaded that way or lacks "model" or "config".
    """
    data = read_bytes(source, name=CHECKPOINT_FILE)
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or unsafe file
        raise ArtifactError(f"{CHECKPOINT_FILE}: cannot be loaded with weights_only=True ({exc})") from exc
    for key in ("model", "config"):
        if not isinstance(checkpoint, dict) or key not in checkpoint:
            raise ArtifactError(f"{CHECKPOINT_FILE}: missing key {key!r}")
    return checkpoint


def export_artifacts(
    *,
    model: ExportableModel,
    output_dir: str | os.PathLike,
    concept_keys: list[str],
    encoder: dict,
    target_return: float,
    temperature: float = 1.0,
    top_k: int | None = None,
    optimizer_state: dict | None = None,
    extra: dict | None = None,
    onnx: bool | None = None,
) -> dict[str, str]:
    """Write the three policy files to `output_dir`, and `dt_policy.onnx` (onnx_export.py) when `onnx` is True, or
    None (the default) and the `onnx` package is installed; return {filename: sha256} of the files written.

    `extra` (JSON-serialisable: training metadata such as the run id or loss history) is stored under
    "extra" in both the checkpoint and the DTLite config. Raises ArtifactError (before writing anything) when
    the model's config or tensors do not make a consistent DTLite pair.
    """
    model_config = model.checkpoint_config()
    state = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    dtlite = dtlite_files(
        model_config=model_config, weights={name: t.float().numpy() for name, t in state.items()},
        concept_keys=concept_keys, encoder=encoder, target_return=target_return, temperature=temperature,
        top_k=top_k, extra=extra,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "model": state,
        "config": model_config,
        "optimizer": optimizer_state,
        "target_return": float(target_return),
        "concept_keys": list(concept_keys),
        "encoder": dict(encoder),
        "extra": extra,
    }
    shas = {CHECKPOINT_FILE: write_checkpoint(out / CHECKPOINT_FILE, checkpoint)}
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        write_atomic(out / name, dtlite[name])
        shas[name] = sha256_hex(dtlite[name])
    if onnx or (onnx is None and onnx_available() and isinstance(model, torch.nn.Module)):
        graph = onnx_bytes(model)  # type: ignore[arg-type]  # a DecisionTransformer
        write_atomic(out / ONNX_FILE, graph)
        shas[ONNX_FILE] = sha256_hex(graph)
    return shas
