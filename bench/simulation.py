"""Benchmark: synthetic generation's speed, interactions (reviews) per second of ``generate_logs`` (issue #22's target
per core: at least 100,000/s at 20 concepts and 50,000/s at 1,000 concepts).

    .venv/bin/python bench/simulation.py [--concepts 20 1000] [--users 1000] [--interactions 300]
        [--families builtin] [--processes 1] [--repeats 3] [--profile]

``--families``: one row per entry, a family name, a comma list (one mixed cohort, as ``generate_logs(families=...)``)
or ``all`` (every family, one row each; "fitted" is FSRS-6 students with the package's default parameters and
same-day rule). The behaviour policies are the default mix. ``--processes N``: ``generate_logs(processes=N)``
(where the checkout's ``generate_logs`` has no ``processes`` argument, only 1 is measured). The median of
``--repeats`` runs per row; for per-core figures run it under ``taskset -c 0`` (with ``--processes`` above one,
give it as many cores). ``--profile``: a cProfile of one run per size (the first family), the functions with the
most time of their own.

It runs unchanged on an older checkout (``cd /work/main && .venv/bin/python /path/to/bench/simulation.py``): it
imports the ``training`` package of the working directory, so that the before/after table compares the same script.
"""
from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the checkout being measured (this script may be copied to another one)

from training.rl.simulator import StudentsLike, generate_logs  # noqa: E402
from training.rl.students import FAMILIES  # noqa: E402


def fitted_students() -> StudentsLike:
    """FSRS-6 students with the package's default parameters and this project's default same-day stabilities."""
    from training.rl.encoder import fsrs6

    return StudentsLike(parameters=fsrs6.DEFAULT_PARAMETERS, same_day_stability=fsrs6.default_same_day_stability())


def run(*, families: str, concepts: int, users: int, interactions: int, processes: int) -> float:
    """Seconds of one ``generate_logs`` call."""
    kwargs = {"processes": processes} if processes != 1 else {}
    students_like = fitted_students() if "fitted" in families.split(",") else None
    started = time.perf_counter()
    generate_logs(num_users=users, interactions=interactions, num_concepts=concepts, seed=42, families=families,
                  students_like=students_like, **kwargs)
    return time.perf_counter() - started


def profile(*, families: str, concepts: int, users: int, interactions: int, top: int = 15) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run(families=families, concepts=concepts, users=users, interactions=interactions, processes=1)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", type=int, nargs="+", default=[20, 1000])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--interactions", type=int, default=300)
    parser.add_argument("--families", nargs="+", default=["builtin"],
                        help="family names, comma lists (one mixed cohort) or 'all' (each family)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run per size")
    args = parser.parse_args()
    rows = [name for entry in args.families for name in (list(FAMILIES) if entry == "all" else [entry])]
    parallel = "processes" in inspect.signature(generate_logs).parameters
    counts = [n for n in args.processes if parallel or n == 1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"generate_logs, default behaviour mix, seed 42; checkout {os.getcwd()} ({commit or '?'}); "
          f"{affinity} of {os.cpu_count()} cores usable; "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"median of {args.repeats}\n")
    print("| concepts | families | processes | users x interactions | seconds | interactions/s |")
    print("| ---: | --- | ---: | --- | ---: | ---: |")
    for concepts in args.concepts:
        for families in rows:
            for processes in counts:
                seconds = statistics.median(
                    run(families=families, concepts=concepts, users=args.users, interactions=args.interactions,
                        processes=processes) for _ in range(args.repeats))
                rate = args.users * args.interactions / seconds
                print(f"| {concepts:,} | {families} | {processes} | {args.users:,} x {args.interactions} | "
                      f"{seconds:.2f} | {rate:,.0f} |", flush=True)
    if args.profile:
        for concepts in args.concepts:
            print(f"\n### cProfile, {concepts} concepts, {rows[0]}\n")
            print(profile(families=rows[0], concepts=concepts, users=args.users, interactions=args.interactions))


if __name__ == "__main__":
    main()
