"""Benchmark: the closed-loop evaluation's wall time by number of worker processes and threads (issue #22: evaluation
on every core; its target: 200 students no slower with 16 threads than with 2).

    .venv/bin/python bench/evaluation_processes.py [--policy_dir DIR] [--students 200] [--interactions 100]
        [--families builtin,fsrs6,actr,hlr] [--runs 1 2 auto auto@1 t2 t16] [--repeats 3]

A run is ``N`` (``evaluate(processes=N)``: the (family, policy) closed loops over N worker processes, one thread
each), ``auto`` (one per core of this process's affinity), ``auto@K`` (auto with this process's affinity narrowed to
its first K cores, as ``taskset`` would: on one core the evaluation stays in this process) or ``tN`` (one process, its
BLAS / OpenMP / PyTorch pools at N threads capped at the available cores, ``evaluate(threads=N, processes=1)``).
Without --policy_dir the policy is an untrained DTLite of the default size (bench/evaluation_threads.py's: the loop's
cost does not depend on what the weights learned). Runs alternate over the list; the table gives each run's median and its time against the first
run's, and says whether every run gave the same results.
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
sys.path.insert(0, str(ROOT / "bench"))

from evaluation_threads import default_size_policy  # noqa: E402
from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE  # noqa: E402
from training.rl.cpu_threads import AUTO, available_cores  # noqa: E402
from training.rl.dtlite import DTLite  # noqa: E402
from training.rl import evaluation  # noqa: E402
from training.rl.evaluation import evaluate  # noqa: E402

STARTED: list[int] = []  # the worker pools the runs started, by size


def recording_pool(workers: int, **kwargs):
    """``evaluation.worker_pool``, noting its size: the table says whether a run went to workers."""
    STARTED.append(workers)
    return REAL_POOL(workers, **kwargs)


REAL_POOL, evaluation.worker_pool = evaluation.worker_pool, recording_pool


def run_settings(run: str) -> tuple[dict, set[int] | None]:
    """``evaluate``'s keyword arguments for a run's name, and the affinity to run it under (None: unchanged).
    ValueError for a name that is none of N, auto, auto@K, tN."""
    if run.startswith("t") and run[1:].isdigit():
        return {"processes": 1, "threads": int(run[1:])}, None
    if run == AUTO:
        return {"processes": AUTO}, None
    if run.startswith(AUTO + "@") and run.split("@", 1)[1].isdigit():
        cores = sorted(os.sched_getaffinity(0))[: int(run.split("@", 1)[1])]
        return {"processes": AUTO}, set(cores)
    if run.isdigit() and int(run) > 0:
        return {"processes": int(run)}, None
    raise ValueError(f"--runs: expected N, auto, auto@K or tN, got {run!r}")


def timed(policy: DTLite, *, settings: dict, affinity: set[int] | None,
          args: argparse.Namespace) -> tuple[float, dict, int]:
    """One evaluation's wall seconds, results and worker processes (1: it ran in this process), under ``affinity``
    when given (restored after)."""
    before = os.sched_getaffinity(0)
    if affinity is not None:
        os.sched_setaffinity(0, affinity)
    STARTED.clear()
    try:
        started = time.perf_counter()
        result = evaluate(policy=policy, num_concepts=int(policy.config["action_dim"]), students=args.students,
                          interactions=args.interactions, seed=1234, families=args.families or None, **settings)
        return time.perf_counter() - started, result, max(STARTED, default=1)
    finally:
        os.sched_setaffinity(0, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy_dir", type=Path, help="a policy's folder (dt_lite_*); default: an untrained one")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--interactions", type=int, default=100)
    parser.add_argument("--families", default="builtin,fsrs6,actr,hlr",
                        help="the student families (what train_crl_policy evaluates on); '' for the built-in only")
    parser.add_argument("--runs", nargs="+", default=["1", "2", AUTO, "auto@1", "t2", "t16"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        settings = {run: run_settings(run) for run in args.runs}
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        policy = (DTLite.load(args.policy_dir / WEIGHTS_FILE, args.policy_dir / CONFIG_FILE) if args.policy_dir
                  else default_size_policy(Path(tmp)))
        seconds: dict[str, list[float]] = {run: [] for run in args.runs}
        results, workers = {}, {}
        for _ in range(args.repeats):
            for run, (kwargs, affinity) in settings.items():
                took, results[run], workers[run] = timed(policy, settings=kwargs, affinity=affinity, args=args)
                seconds[run].append(took)
                print(f"{run}: {took:.1f} s", file=sys.stderr, flush=True)  # a slow run shows before the table
    print(f"{args.students} students x {args.interactions} reviews, families {args.families or 'builtin only'}, "
          f"{available_cores()} cores, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} (after), "
          f"median of {args.repeats}\n")
    first = statistics.median(seconds[args.runs[0]])
    print(f"| run | worker processes | seconds (median) | against {args.runs[0]} | dt mean final recall |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for run in args.runs:
        median = statistics.median(seconds[run])
        print(f"| {run} | {workers[run]} | {median:.1f} | {median / first:.2f}x | {results[run]['results']['dt']['mean']:.4f} |")
    same = all(results[run] == results[args.runs[0]] for run in args.runs)
    print(f"\nresults identical across runs: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
