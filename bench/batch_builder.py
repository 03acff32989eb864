"""Benchmark: the trainer's batch builder against one optimiser step of the default model (issue #22's target: the
builder at least 20x faster than a step, at 20 and at 1,000 concepts).

    .venv/bin/python bench/batch_builder.py [--concepts 20 1000] [--users 500 200] [--interactions 100 300]
        [--batch-size 64] [--repeats 15] [--threads N] [--device cpu|cuda]

Per deck (simulated students, extracted as train_crl_policy extracts them: review rows, states rebuilt per batch):
the median time of the NumPy reference (trainer.sample_windows, then the host-to-device copy), of the device builder
(batches.BatchBuilder.batch from the same kind of draw) and of one optimiser step of the default model
(trainer.default_model_config, forward, cross-entropy, backward, clipping, AdamW) on a built batch. Calls alternate
between the three, so that a shared machine slows them alike; the ratios are within one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.rl.batches import BatchBuilder, draw_window_ends  # noqa: E402
from training.rl.dt import DecisionTransformer  # noqa: E402
from training.rl.simulator import generate_logs  # noqa: E402
from training.rl.trainer import (  # noqa: E402
    TrainConfig, default_model_config, optimisation_step, sample_windows, training_autocast, training_dtype,
)
from training.rl.trajectories import trajectories_from_columns  # noqa: E402


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, work) -> float:
    synchronise(device)
    started = time.perf_counter()
    work()
    synchronise(device)
    return time.perf_counter() - started


def measure(*, concepts: int, users: int, interactions: int, batch_size: int, repeats: int, device: str) -> dict:
    started = time.perf_counter()
    log = generate_logs(num_users=users, interactions=interactions, num_concepts=concepts, seed=42)
    dataset = trajectories_from_columns(log, num_concepts=concepts)
    data_s = time.perf_counter() - started
    config = default_model_config(dataset)
    K = config.context_length
    builder = BatchBuilder(dataset, context_length=K, device=device, reuse_states=True)  # as the trainer builds
    model = DecisionTransformer(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
    # the trainer's arithmetic: bfloat16 autocast on CUDA and on a CPU with bfloat16 matrix units (TrainConfig's
    # default), float32 on other CPUs
    arithmetic = TrainConfig().cpu_bfloat16
    autocast = training_autocast(device, cpu_bfloat16=arithmetic)
    rng = np.random.default_rng(0)
    batch = builder.batch(draw_window_ends(rng, num_steps=builder.num_steps, batch_size=batch_size))

    def reference() -> None:
        windows = sample_windows(dataset, rng=rng, batch_size=batch_size, context_length=K)
        {k: torch.from_numpy(v).to(device) for k, v in windows.items()}

    def built() -> None:
        builder.batch(draw_window_ends(rng, num_steps=builder.num_steps, batch_size=batch_size))

    def step() -> None:
        optimisation_step(model, optimizer, batch, autocast=autocast, grad_clip=0.25)

    for work in (reference, built, step):  # warm-up
        work()
    times: dict[str, list[float]] = {"reference": [], "built": [], "step": []}
    for _ in range(repeats):
        for name, work in (("reference", reference), ("built", built), ("step", step)):
            times[name].append(timed(device, work))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"concepts": concepts, "rows": len(dataset.actions), "data_s": data_s,
            "dtype": training_dtype(device, cpu_bfloat16=arithmetic), **medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", type=int, nargs="+", default=[20, 1000])
    parser.add_argument("--users", type=int, nargs="+", default=[500, 200],
                        help="simulated learners per deck (one value, or one per --concepts)")
    parser.add_argument("--interactions", type=int, nargs="+", default=[100, 300],
                        help="reviews per learner (one value, or one per --concepts)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's own)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    def per_deck(values: list[int], i: int) -> int:
        return values[i] if len(values) > 1 else values[0]

    print(f"batch {args.batch_size}, {args.repeats} repeats, device {args.device}, {torch.get_num_threads()} threads, "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| concepts | rows | NumPy reference + copy (ms) | device builder (ms) | optimiser step (ms) | step's "
          "arithmetic | step / builder | builder speed-up over the reference |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for i, concepts in enumerate(args.concepts):
        row = measure(concepts=concepts, users=per_deck(args.users, i), interactions=per_deck(args.interactions, i),
                      batch_size=args.batch_size, repeats=args.repeats, device=args.device)
        print(f"| {concepts:,} | {row['rows']:,} | {1e3 * row['reference']:.1f} | {1e3 * row['built']:.1f} | "
              f"{1e3 * row['step']:.1f} | {row['dtype']} | {row['step'] / row['built']:.0f}x | "
              f"{row['reference'] / row['built']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
