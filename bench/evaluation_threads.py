"""Benchmark: the closed-loop evaluation's wall time by thread count (issue #22's target: 200 students no slower with
16 threads than with 2).

    .venv/bin/python bench/evaluation_threads.py [--policy_dir DIR] [--students 200] [--interactions 100]
        [--threads 1 2 16] [--repeats 1] [--asked]

By default N is the caller's setting: the run sets this process's BLAS / OpenMP pools (threadpoolctl) and PyTorch's
to N threads, as a trainer with ``TrainConfig.num_threads=N`` or OMP_NUM_THREADS=N leaves them, then calls
``evaluate(processes=1)`` as train_crl_policy does after training, in this process: the evaluation sizes its own
threads (training/rl/cpu_threads.py: one a process, ``EVALUATION_THREADS``, never more than the available cores) and
gives the caller's back. With --asked, N is asked of the evaluation itself, ``evaluate(threads=N, processes=1)``
(capped at the available cores): what a thread count costs. Worker processes are bench/evaluation_processes.py's.
Without --policy_dir the policy is an untrained model of DTConfig's default size (20 concepts, hidden 64, 2 layers,
context 20; the figures in bench/README.md were measured at the earlier hidden 128, 4 layers) with full attention,
exported to DTLite: the cost of the loop does not depend on what the weights learned. Runs alternate over
the thread counts; the table gives the medians and each count's time against the 2-thread run's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE  # noqa: E402
from training.rl.cpu_threads import available_cores  # noqa: E402
from training.rl.dtlite import DTLite  # noqa: E402
from training.rl.evaluation import evaluate  # noqa: E402


def default_size_policy(folder: Path) -> DTLite:
    """An untrained DT of the size train_crl_policy trains by default, exported to DTLite in folder."""
    import torch

    from training.rl.checkpoint import export_artifacts
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.encoder import EncoderConfig

    encoder = EncoderConfig(num_concepts=20)
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=encoder.state_dim, action_dim=20, return_scale=1.0,
                                         concept_features=4, state_token="summary")).eval()
    export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i:02d}" for i in range(20)],
                     encoder=encoder.to_dict(), target_return=0.5)
    return DTLite.load(folder / WEIGHTS_FILE, folder / CONFIG_FILE)


def run(policy: DTLite, *, num_concepts: int, students: int, interactions: int, threads: int, asked: bool) -> dict:
    """One in-process evaluation (seed 1234): ``evaluate(threads=threads)`` when ``asked``, else ``evaluate()`` called
    with this process's BLAS / OpenMP / PyTorch pools at ``threads`` (restored after)."""
    import torch

    common = dict(policy=policy, num_concepts=num_concepts, students=students, interactions=interactions, seed=1234,
                  processes=1)
    if asked:
        return evaluate(threads=threads, **common)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            return evaluate(**common)
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy_dir", type=Path, help="a policy's folder (dt_lite_*); default: an untrained one")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--interactions", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 16])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--asked", action="store_true",
                        help="ask the evaluation for N threads (evaluate(threads=N)) instead of setting the caller's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        policy = (DTLite.load(args.policy_dir / WEIGHTS_FILE, args.policy_dir / CONFIG_FILE) if args.policy_dir
                  else default_size_policy(Path(tmp)))
        num_concepts = int(policy.config["action_dim"])
        seconds: dict[int, list[float]] = {n: [] for n in args.threads}
        results = {}
        for _ in range(args.repeats):
            for n in args.threads:
                started = time.perf_counter()
                results[n] = run(policy, num_concepts=num_concepts, students=args.students,
                                 interactions=args.interactions, threads=n, asked=args.asked)
                seconds[n].append(time.perf_counter() - started)
    print(f"{args.students} students x {args.interactions} reviews, {available_cores()} available cores, load "
          f"average {', '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.repeats} repeat(s), N threads "
          f"{'asked of the evaluation' if args.asked else 'set by the caller'}\n")
    baseline = statistics.median(seconds[2]) if 2 in seconds else None
    print("| threads | seconds (median) | against 2 threads | dt mean final recall |")
    print("| ---: | ---: | ---: | ---: |")
    for n in args.threads:
        median = statistics.median(seconds[n])
        ratio = f"{median / baseline:.2f}x" if baseline else "-"
        print(f"| {n} | {median:.1f} | {ratio} | {results[n]['results']['dt']['mean']:.4f} |")
    same = all(results[n] == results[args.threads[0]] for n in args.threads)
    print(f"\nresults identical across thread counts: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
