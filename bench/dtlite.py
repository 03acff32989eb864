"""Benchmark: every inference engine on the same weights, one thread each, side by side; prints a Markdown table.

    .venv/bin/python bench/dtlite.py [--attention-window W] [--hidden-dim 64] [--layers 2] [--heads 2] [--action-dim 20]
        [--repeats 400]

The engines: PyTorch eager's full forward; DTLite's full forward for the last state token (`select_action`) and for
every position (`action_logits`); DTLite's per-step path (`step`: one new timestep against the cached keys and
values of a prefilled learner; `extend+step`: two reviews since the last recommendation, the first appended without
logits); ONNX Runtime on `dt_policy.onnx` (when installed). The model has local attention (``--attention-window``,
default the widest exact one; 0: full attention, without the per-step rows). Batch 1 (one recommendation) measures
latency; batch 256 measures throughput. Calls alternate between the engines so that a noisy, shared machine slows
all alike.
"""
from __future__ import annotations

import os

# BLAS reads these when numpy is first imported: one thread, so the comparison is per core
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from training.rl.checkpoint import export_artifacts  # noqa: E402
from training.rl.dt import DecisionTransformer, DTConfig  # noqa: E402
from training.rl.dtlite import DTLite  # noqa: E402
from training.rl.model_config import DEFAULT_CONTEXT_LENGTH, max_attention_window  # noqa: E402


def limit_threads() -> str:
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "env vars"
    threadpool_limits(1)
    return "threadpoolctl"


def interleaved(engines: dict[str, Callable[[], object]], repeats: int,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, np.ndarray]:
    """Seconds per call of each engine, the engines called in turn ``repeats`` times after a warm-up."""
    warmup = max(2, repeats // 20)
    for f in engines.values():
        for _ in range(warmup):
            f()
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, f in engines.items():
            start = clock()
            f()
            seconds[name].append(clock() - start)
    return {name: np.array(s) for name, s in seconds.items()}


def make_inputs(B: int, T: int, state_dim: int, action_dim: int) -> dict[str, np.ndarray]:
    """A full context for one learner (no mask, torch's fastest path); mixed history lengths for a batch."""
    rng = np.random.default_rng(0)
    x = {
        "returns_to_go": rng.normal(size=(B, T)).astype(np.float32),
        "states": rng.random((B, T, state_dim), dtype=np.float32),
        "actions": rng.integers(0, action_dim, (B, T)),
        "timesteps": np.tile(np.arange(T), (B, 1)),
    }
    if B > 1:  # left padding; every row has a valid step before its last two (the per-step rows prefill those)
        x["attention_mask"] = (np.arange(T) >= rng.integers(0, max(1, T - 2), (B, 1))).astype(np.int64)
    return x


def onnx_engine(model: DecisionTransformer, x: dict[str, np.ndarray]) -> Callable[[], object] | str:
    """An ONNX Runtime session's call on the project's export (training/rl/onnx_export.py), or why there is none."""
    try:
        import onnxruntime

        from training.rl.onnx_export import onnx_bytes
    except ImportError as exc:
        return f"not installed ({exc.name})"
    try:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(onnx_bytes(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # export needs the onnx package; a reference only
        return f"export failed: {exc}"
    B, T = x["actions"].shape
    feed = {**x, "attention_mask": x.get("attention_mask", np.ones((B, T), np.int64))}
    return lambda: session.run(None, feed)


def step_engines(lite: DTLite, x: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    """DTLite's per-step rows: a learner prefilled on the steps before the last (or two before), then stepped."""
    B, T = x["actions"].shape
    mask = x.get("attention_mask")

    def prefix(n: int) -> dict[str, np.ndarray]:
        return {k: v[:, :T - n] for k, v in x.items()}

    def new(i: int) -> tuple[np.ndarray, ...]:  # the step at index i, after the state at i - 1
        return x["actions"][:, i - 1], x["returns_to_go"][:, i], x["states"][:, i], x["timesteps"][:, i]

    if mask is not None and not mask[:, :T - 2].any(axis=1).all():
        raise ValueError("every row needs a valid step before its last two")
    one, two = lite.prefill(**prefix(1)), lite.prefill(**prefix(2))

    def extend_and_step() -> object:
        a, r, s, t = new(T - 2)
        quiet = lite.extend(two, a[:, None], r[:, None], s[:, None], t[:, None], logits=False)
        return lite.step(quiet, *new(T - 1))

    return {"dtlite step": lambda: lite.step(one, *new(T - 1)), "dtlite extend+step": extend_and_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--action-dim", type=int, default=20)
    parser.add_argument("--concept-features", type=int, default=4,
                        help="state features per concept, as the encoder's (default 4); the state is "
                             "action_dim x this; 0: the original linear action head only, --state-dim wide")
    parser.add_argument("--state-dim", type=int, default=80, help="only with --concept-features 0")
    parser.add_argument("--state-token", choices=("summary", "linear"), default="summary",
                        help="summary: the fixed-size summary train_crl_policy exports (default); linear: the "
                             "earlier embedding of the whole state (needs --concept-features or --state-dim)")
    parser.add_argument("--attention-window", type=int, default=None,
                        help="the model's local attention window in tokens (default: the widest exact one for "
                             "--layers, 30 at the default context and 2 layers, as train_crl_policy trains); 0: full "
                             "attention, no per-step rows")
    parser.add_argument("--hidden-dim", type=int, default=DTConfig.hidden_dim,
                        help=f"the model's width (default DTConfig's, {DTConfig.hidden_dim})")
    parser.add_argument("--layers", type=int, default=DTConfig.num_layers,
                        help=f"transformer blocks (default DTConfig's, {DTConfig.num_layers})")
    parser.add_argument("--heads", type=int, default=DTConfig.num_heads,
                        help=f"attention heads (default DTConfig's, {DTConfig.num_heads})")
    parser.add_argument("--repeats", type=int, default=400)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: the calling thread's CPU time (every engine runs on "
                             "one thread), which a machine shared with other work disturbs much less")
    args = parser.parse_args()
    how = limit_threads()

    torch.manual_seed(0)
    if args.concept_features:
        args.state_dim = args.concept_features * args.action_dim
    # the defaults otherwise: context 20, as train_crl_policy's
    window = args.attention_window
    if window is None:
        window = max_attention_window(context_length=DEFAULT_CONTEXT_LENGTH, num_layers=args.layers)
    config = DTConfig(state_dim=args.state_dim, action_dim=args.action_dim, return_scale=10.0,
                      hidden_dim=args.hidden_dim, num_layers=args.layers, num_heads=args.heads,
                      concept_features=args.concept_features,
                      state_token=args.state_token if args.concept_features else "linear",
                      attention_window=window or None)
    model = DecisionTransformer(config).eval()
    directory = Path(tempfile.mkdtemp(prefix="bench-dtlite-"))
    export_artifacts(model=model, output_dir=directory, concept_keys=[str(i) for i in range(args.action_dim)],
                     encoder={}, target_return=1.0, onnx=False)
    lite = DTLite.load(directory / "dt_lite_weights.npz", directory / "dt_lite_config.json")

    print(f"hidden {config.hidden_dim}, layers {config.num_layers}, heads {config.num_heads}, "
          f"context {config.context_length}, attention window {config.attention_window or 'full'}, "
          f"state_dim {args.state_dim}, action_dim {args.action_dim}, "
          f"concept head {config.concept_features and config.concept_head_dim or 'none'}, state token "
          f"{config.state_token}; 1 thread ({how}), {args.clock} clock; numpy {np.__version__}, torch "
          f"{torch.__version__}")
    print()
    print("| batch | engine | median ms | p90 ms | rows/s | vs PyTorch |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for B, repeats in ((1, args.repeats), (256, max(5, args.repeats // 40))):
        x = make_inputs(B, config.context_length, args.state_dim, args.action_dim)
        tx = tuple(torch.from_numpy(v) for v in x.values())

        def torch_forward() -> object:
            with torch.inference_mode():
                return model(*tx)

        engines: dict[str, Callable[[], object]] = {
            "pytorch eager forward": torch_forward,
            "dtlite select_action": lambda: lite.select_action(**x),
            "dtlite action_logits": lambda: lite.action_logits(**x),
        }
        if config.attention_window:
            engines |= step_engines(lite, x)
        onnx = onnx_engine(model, x)
        if callable(onnx):
            engines["onnxruntime"] = onnx
        seconds = interleaved(engines, repeats, time.thread_time if args.clock == "cpu" else time.perf_counter)
        base = np.median(seconds["pytorch eager forward"])
        for name, s in seconds.items():
            median = np.median(s)
            print(f"| {B} | {name} | {median * 1e3:.3f} | {np.percentile(s, 90) * 1e3:.3f} | {B / median:.0f} | "
                  f"{median / base:.2f} |")
        if not callable(onnx):
            print(f"| {B} | onnxruntime | skipped: {onnx} | | | |")


if __name__ == "__main__":
    main()
