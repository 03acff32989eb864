"""A policy version's files (dt_model.pt, dt_lite_weights.npz, dt_lite_config.json): their names, the DTLite
format (encode, load, verify) and the SHA-256 checks, in NumPy only.

Serving verifies and loads the DTLite files with this module and never imports torch; reading and writing
`dt_model.pt`, and exporting a trained model, are in checkpoint.py.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Union

import numpy as np

from .model_config import check_model_config, state_token_input_dim

FORMAT_VERSION = 1
CHECKPOINT_FILE = "dt_model.pt"
WEIGHTS_FILE = "dt_lite_weights.npz"
CONFIG_FILE = "dt_lite_config.json"
# Every file of a policy version, as the registry stores and verifies them.
ARTIFACT_NAMES = (CHECKPOINT_FILE, WEIGHTS_FILE, CONFIG_FILE)
# The ONNX graph of the model (onnx_export.py), written beside the three when the `onnx` package is installed; a
# version registers it when present (SHA-256 like the others), and serving never reads it.
ONNX_FILE = "dt_policy.onnx"
OPTIONAL_ARTIFACT_NAMES = (ONNX_FILE,)

# A file given as a path, its bytes, or an open binary file object (e.g. from Django's storage API).
Source = Union[str, os.PathLike, bytes, IO[bytes]]


class ArtifactError(ValueError):
    """An artifact file is missing, corrupt or inconsistent; the message names the file and the mismatch."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Every key a DTLite config must have; the first eight are the original DTLite config's keys.
REQUIRED_CONFIG_KEYS = (
    "state_dim", "action_dim", "hidden_dim", "num_layers", "context_length", "temperature", "top_k", "target_return",
    "num_heads", "max_timestep", "return_scale", "concept_keys", "encoder", "format_version", "weights_sha256",
)
# key -> (check, what was expected) for the keys that are not the model's architecture (check_model_config's).
_CONFIG_CHECKS: dict[str, tuple[Any, str]] = {
    "temperature": (lambda v: _finite_number(v) and v >= 0, "a number >= 0"),
    "top_k": (lambda v: v is None or _positive_int(v), "null or a positive integer"),
    "target_return": (_finite_number, "a finite number"),
    "return_scale": (lambda v: _finite_number(v) and v > 0, "a number > 0"),
    "concept_keys": (lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v), "a list of strings"),
    "encoder": (lambda v: isinstance(v, dict), "an object"),
    "format_version": (lambda v: v == FORMAT_VERSION, f"{FORMAT_VERSION}"),
    "weights_sha256": (
        lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
        "a 64-character lowercase hex SHA-256",
    ),
}


def expected_weight_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Array name -> shape for a config; the names are DecisionTransformer's state_dict keys."""
    A, H = config["action_dim"], config["hidden_dim"]
    shapes: dict[str, tuple[int, ...]] = {
        "embed_timestep.weight": (config["max_timestep"], H),
        "embed_return.weight": (H, 1),
        "embed_return.bias": (H,),
        "embed_state.weight": (H, state_token_input_dim(config)),
        "embed_state.bias": (H,),
        "embed_action.weight": (A, H),
        "embed_ln.weight": (H,),
        "embed_ln.bias": (H,),
    }
    for i in range(config["num_layers"]):
        p = f"blocks.{i}."
        shapes |= {
            p + "ln_1.weight": (H,), p + "ln_1.bias": (H,),
            p + "attn.c_attn.weight": (3 * H, H), p + "attn.c_attn.bias": (3 * H,),
            p + "attn.c_proj.weight": (H, H), p + "attn.c_proj.bias": (H,),
            p + "ln_2.weight": (H,), p + "ln_2.bias": (H,),
            p + "mlp.c_fc.weight": (4 * H, H), p + "mlp.c_fc.bias": (4 * H,),
            p + "mlp.c_proj.weight": (H, 4 * H), p + "mlp.c_proj.bias": (H,),
        }
    shapes |= {"ln_f.weight": (H,), "ln_f.bias": (H,), "predict_action.weight": (A, H), "predict_action.bias": (A,)}
    F, D = config.get("concept_features", 0), config.get("concept_head_dim", 0)
    if F:
        shapes |= {"concept_head.c_state.weight": (D, H), "concept_head.c_state.bias": (D,),
                   "concept_head.c_concept.weight": (D, F), "concept_head.c_out.weight": (1, D)}
    return shapes


def read_bytes(source: Source, *, name: str) -> bytes:
    """The whole content of a path, bytes or binary file object; `name` is used in error messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{name}: file not found at {os.fspath(source)}") from None
    if hasattr(source, "seek") and getattr(source, "seekable", lambda: True)():
        source.seek(0)
    data = source.read()
    return data.encode() if isinstance(data, str) else bytes(data)


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(fileobj: IO[bytes], *, chunk_size: int = 1 << 20) -> tuple[str, int]:
    """(lowercase hex SHA-256, size in bytes) of a binary file object read from its current position to the end,
    in chunks (a storage backend's file need not fit in memory)."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: fileobj.read(chunk_size), b""):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_sha256(*, name: str, actual: str, expected: str) -> None:
    """Raise ArtifactError naming the file unless its SHA-256 (`actual`) is the `expected` one."""
    if actual != expected:
        raise ArtifactError(f"{name}: SHA-256 mismatch: the file has {actual}, expected {expected}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader (or a resumed run) never sees half a file: beside it, then renamed
    over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dtlite_files(
    *,
    model_config: Mapping[str, Any],
    weights: Mapping[str, np.ndarray],
    concept_keys: list[str],
    encoder: dict,
    target_return: float,
    temperature: float = 1.0,
    top_k: int | None = None,
    extra: dict | None = None,
) -> dict[str, bytes]:
    """{WEIGHTS_FILE: npz bytes, CONFIG_FILE: JSON bytes} of a model: its config (DecisionTransformer's, as plain
    Python types) and its state_dict as float32 arrays; the config records the npz's SHA-256.

    Raises ArtifactError when the config or the arrays are not a consistent DTLite pair (checked before any
    byte is produced). `extra` (JSON-serialisable training metadata) is stored under "extra".
    """
    config: dict[str, Any] = {
        "state_dim": model_config["state_dim"],
        "action_dim": model_config["action_dim"],
        "hidden_dim": model_config["hidden_dim"],
        "num_layers": model_config["num_layers"],
        "context_length": model_config["context_length"],
        "temperature": float(temperature),
        "top_k": None if top_k is None else int(top_k),
        "target_return": float(target_return),
        "num_heads": model_config["num_heads"],
        "max_timestep": model_config["max_timestep"],
        "return_scale": float(model_config["return_scale"]),
        "concept_keys": list(concept_keys),
        "encoder": dict(encoder),
        "format_version": FORMAT_VERSION,
    }
    if model_config.get("concept_features"):
        config["concept_features"] = model_config["concept_features"]
        config["concept_head_dim"] = model_config["concept_head_dim"]
    if model_config.get("state_token", "linear") != "linear":
        config["state_token"] = model_config["state_token"]  # absent: the linear token of earlier exports
    if model_config.get("attention_window") is not None:
        config["attention_window"] = model_config["attention_window"]  # absent: full attention (earlier exports)
    if extra is not None:
        config["extra"] = extra
    config["weights_sha256"] = "0" * 64  # placeholder so the checks below can run before the npz exists
    check_config(config)
    check_weights(weights, config=config)

    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    weights_bytes = buffer.getvalue()
    config["weights_sha256"] = sha256_hex(weights_bytes)
    return {WEIGHTS_FILE: weights_bytes, CONFIG_FILE: (json.dumps(config, indent=2) + "\n").encode()}


def check_config(config: Any) -> None:
    """Raise ArtifactError unless `config` is a complete, consistent DTLite config."""
    if not isinstance(config, dict):
        raise ArtifactError(f"{CONFIG_FILE}: expected a JSON object, got {type(config).__name__}")
    if "format_version" in config and config["format_version"] != FORMAT_VERSION:
        raise ArtifactError(f"{CONFIG_FILE}: unknown format_version {config['format_version']!r} "
                            f"(this code reads {FORMAT_VERSION})")
    for key in REQUIRED_CONFIG_KEYS:
        if key not in config:
            raise ArtifactError(f"{CONFIG_FILE}: missing key {key!r}")
    try:
        check_model_config(config)
    except ValueError as exc:
        raise ArtifactError(f"{CONFIG_FILE}: {exc}") from None
    for key, (check, expected) in _CONFIG_CHECKS.items():
        if not check(config[key]):
            raise ArtifactError(f"{CONFIG_FILE}: {key} must be {expected}, got {config[key]!r}")
    if len(config["concept_keys"]) != config["action_dim"]:
        raise ArtifactError(f"{CONFIG_FILE}: concept_keys has {len(config['concept_keys'])} entries "
                            f"but action_dim is {config['action_dim']}")
    if config["top_k"] is not None and config["top_k"] > config["action_dim"]:
        raise ArtifactError(f"{CONFIG_FILE}: top_k {config['top_k']} exceeds action_dim {config['action_dim']}")


def check_weights(weights: Mapping[str, np.ndarray], *, config: Mapping[str, Any]) -> None:
    """Raise ArtifactError unless `weights` has exactly the arrays the config implies, float32, right shapes."""
    expected = expected_weight_shapes(config)
    for name, shape in expected.items():
        if name not in weights:
            raise ArtifactError(f"{WEIGHTS_FILE}: missing array {name!r}")
        array = weights[name]
        if array.dtype != np.float32:
            raise ArtifactError(f"{WEIGHTS_FILE}: array {name!r} has dtype {array.dtype}, expected float32")
        if tuple(array.shape) != shape:
            raise ArtifactError(f"{WEIGHTS_FILE}: array {name!r} has shape {tuple(array.shape)}, "
                                f"expected {shape} from {CONFIG_FILE}")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise ArtifactError(f"{WEIGHTS_FILE}: unexpected arrays {unexpected} for {CONFIG_FILE}")


def load_config(source: Source) -> dict[str, Any]:
    """Parse and check `dt_lite_config.json` from a path, bytes or file object."""
    data = read_bytes(source, name=CONFIG_FILE)
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{CONFIG_FILE}: not valid JSON ({exc})") from None
    check_config(config)
    return config


def load_weights(source: Source, *, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Read `dt_lite_weights.npz`, refusing it unless its SHA-256 and arrays match the (checked) config."""
    data = read_bytes(source, name=WEIGHTS_FILE)
    actual = sha256_hex(data)
    if actual != config["weights_sha256"]:
        raise ArtifactError(f"{WEIGHTS_FILE}: SHA-256 mismatch: the file has {actual}, "
                            f"{CONFIG_FILE} expects {config['weights_sha256']}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            weights = {name: npz[name] for name in npz.files}
    except Exception as exc:  # zipfile, format and pickle refusals all mean "not our npz"
        raise ArtifactError(f"{WEIGHTS_FILE}: cannot be read as an .npz of plain arrays ({exc})") from None
    check_weights(weights, config=config)
    return weights


def verify_artifacts(
    *,
    directory: str | os.PathLike | None = None,
    weights: Source | None = None,
    config: Source | None = None,
    checkpoint: Source | None = None,
    expected_sha256: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Check a policy's files and return (config, weights); raise ArtifactError naming the first problem.

    Files come from `directory` or are given one by one (paths, bytes or file objects). The DTLite pair is
    always checked in full; `expected_sha256` ({filename: sha256}, e.g. from the policy registry) is checked
    for each file it names, which is how `dt_model.pt` is checked without torch.
    """
    if directory is not None:
        d = Path(directory)
        weights = d / WEIGHTS_FILE if weights is None else weights
        config = d / CONFIG_FILE if config is None else config
        if checkpoint is None and expected_sha256 and CHECKPOINT_FILE in expected_sha256:
            checkpoint = d / CHECKPOINT_FILE
    if weights is None or config is None:
        raise ArtifactError(f"both {WEIGHTS_FILE} and {CONFIG_FILE} are needed (give directory= or both files)")
    config_bytes = read_bytes(config, name=CONFIG_FILE)
    weights_bytes = read_bytes(weights, name=WEIGHTS_FILE)
    files = {CONFIG_FILE: config_bytes, WEIGHTS_FILE: weights_bytes}
    if checkpoint is not None:
        files[CHECKPOINT_FILE] = read_bytes(checkpoint, name=CHECKPOINT_FILE)
    for filename, sha in (expected_sha256 or {}).items():
        if filename not in files:
            raise ArtifactError(f"{filename}: missing (an expected SHA-256 was given for it)")
        check_sha256(name=filename, actual=sha256_hex(files[filename]), expected=sha)
    parsed = load_config(config_bytes)
    return parsed, load_weights(weights_bytes, config=parsed)
