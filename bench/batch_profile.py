"""Benchmark: where a batch recommendation's time goes (POST /api/v1/recommendations/batch); prints Markdown tables.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crl_bench [CACHE_URL=redis://127.0.0.1:6379/12] \\
        .venv/bin/python bench/batch_profile.py [--batch 1000] [--batches 10] [--profiled 3] [--attention-window 15]

Seeds the api_load bench's curriculum (20 concepts, learners with a `--history`-review history, two policy versions
of the default Decision Transformer size, v1 active), then posts `--batches` batches of `--batch` learners (90% with
a history, 10% never seen, as `api_load.py --batch` sends them) in one process through the whole Django stack
(middleware, token authentication, throttle, view, JSON rendering; `django.test.Client`, no HTTP server).

Reports learners/s by wall time and by the process's CPU time (every thread of this process: the recommendation
log's writer included; a shared machine disturbs CPU time much less than wall time), then a cProfile of
`--profiled` more batches: the cumulative time of each stage of a batch (the view's parsing, the lookup query, the
state decoding, DTLite, the answers, the recommendation log, the JSON rendering) and the self time per part, per
batch. `--attention-window W` seeds policies with local attention (their per-step path can serve learners whose
cached keys and values are current: `--repeat` asks for the same learners again, the second ask then steps).
Loopback only; profiling slows Python-heavy parts more than NumPy's: take throughput from the unprofiled rows.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api_load  # noqa: E402  (the seeding and clean-up of bench/api_load.py)
from serving_profile import OTHER, PARTS, profile_parts  # noqa: E402

# (stage, (file substring, function name) of the functions whose cumulative time is the stage's; the first listed
# that ran counts, so a renamed function shows as 0)
STAGES = [
    ("the view (BatchRecommendationsView.post)", [("curriculum/api/views.py", "post")]),
    ("lookup queries (+ JSON of states)", [("curriculum/selectors.py", "serving_batch_lookup")]),
    ("learner states decoded", [("curriculum/serving.py", "_state"), ("curriculum/serving.py", "_states")]),
    ("DT contexts built", [("training/rl/encoder/state.py", "context"), ("training/rl/encoder/state.py", "contexts")]),
    ("DTLite", [("training/rl/dtlite.py", "select_action"), ("training/rl/dtlite.py", "prefill"),
                ("training/rl/dtlite.py", "extend")]),
    ("answers (Recommendation objects)", [("curriculum/serving.py", "_answers")]),
    ("recommendation log rows + submit", [("curriculum/serving.py", "_log_row"),
                                          ("curriculum/experiments/recommendation_log.py", "submit")]),
    ("results rendered", [("curriculum/api/serializers.py", "render"),
                          ("curriculum/api/serializers.py", "recommendation_body")]),
    ("JSON encoded (renderer)", [("rest_framework/renderers.py", "render")]),
]


def stage_times(profile: cProfile.Profile, batches: int) -> dict[str, float]:
    """Cumulative ms per batch of each stage (the sum of its listed functions' cumulative times; a function listed
    under a stage that calls another listed under it would count twice, so none does)."""
    stats = pstats.Stats(profile).stats
    out = {}
    for stage, functions in STAGES:
        total = 0.0
        for (filename, _, name), (_, _, _, cumtime, _) in stats.items():
            if any(needle in filename and name == fn for needle, fn in functions):
                total += cumtime
        out[stage] = total * 1000 / batches
    return out


def run(args) -> dict:
    from django.test import Client

    key = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="batch-profile-") as tmp:
        t = time.perf_counter()
        seeded = api_load.seed(argparse.Namespace(concepts=20, learners=args.learners, history=args.history,
                                                  attention_window=args.attention_window), key, Path(tmp))
        print(f"seeded {args.learners} learners x {args.history} reviews in {time.perf_counter() - t:.1f} s")
        try:
            client = Client(HTTP_AUTHORIZATION=f"Token {seeded['token']}", HTTP_HOST="127.0.0.1")
            rng = random.Random(1)

            def body() -> str:
                learners = [rng.choice(seeded["learners"]) if rng.random() < 0.9 else f"{key}-new{rng.randrange(10**6)}"
                            for _ in range(args.batch)]
                return json.dumps({"curriculum": key, "learners": learners})

            def one(sent: str) -> tuple[float, float]:
                wall, cpu = time.perf_counter(), time.process_time()
                response = client.post("/api/v1/recommendations/batch", sent, content_type="application/json")
                elapsed = (time.perf_counter() - wall, time.process_time() - cpu)
                if response.status_code != 200:
                    raise SystemExit(f"HTTP {response.status_code}: {response.content[:300]!r}")
                results = json.loads(response.content)["results"]
                if len(results) != args.batch or any("error" in r for r in results):
                    raise SystemExit(f"unexpected answer: {response.content[:300]!r}")
                return elapsed

            for _ in range(2):  # warm-up: the policy loaded, connections open
                one(body())
            # as crlsite/wsgi.py does in a web worker: what start-up and the warm-up left alive is frozen out of the
            # collector's passes, else one full pass over this process's heap (the seeding's imports, PyTorch
            # included: about 170 ms on the AMD EPYC development machine) lands on a batch now and then and, under
            # the profiler, on whichever function allocated at that moment
            from crlsite.heap import freeze_loaded_heap

            freeze_loaded_heap()
            bodies = [body() for _ in range(args.batches)]
            timed = {"batches": [one(b) for b in bodies]}
            if args.repeat:
                timed["the same batches again"] = [one(b) for b in bodies]
            profile = cProfile.Profile()
            profiled = [body() for _ in range(args.profiled)]
            profile.enable()
            for b in profiled:
                one(b)
            profile.disable()
            from curriculum.experiments import recommendation_log

            recommendation_log.writer().flush(timeout=30)
        finally:
            api_load.cleanup(key)
    if not args.profiled:
        return {"timed": timed}
    top = sorted(pstats.Stats(profile).stats.items(), key=lambda item: -item[1][2])[:args.top]
    return {"timed": timed, "stages": stage_times(profile, args.profiled),
            "parts": profile_parts(profile, args.profiled),
            "top": [(f"{Path(f).name}:{line} {name}", tottime * 1000 / args.profiled)
                    for (f, line, name), (_, _, tottime, _, _) in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1000, help="learners per request")
    parser.add_argument("--batches", type=int, default=10, help="unprofiled batches timed")
    parser.add_argument("--profiled", type=int, default=3, help="batches under cProfile (0: none, no profile tables)")
    parser.add_argument("--learners", type=int, default=1000, help="learners seeded with a history")
    parser.add_argument("--history", type=int, default=30, help="reviews per seeded learner")
    parser.add_argument("--attention-window", type=int, default=None,
                        help="the policies' local attention window in tokens (default: the widest exact one, as "
                             "train_crl_policy trains the default policy; 0: full attention)")
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with the most self time")
    parser.add_argument("--repeat", action="store_true", help="time the same batches a second time")
    args = parser.parse_args()
    if args.profiled < 0 or args.batches < 1:
        parser.error("--profiled must be >= 0 and --batches >= 1")
    if not os.environ.get("DATABASE_URL"):
        print("note: DATABASE_URL is not set: running on the SQLite default; the issue's figures are PostgreSQL's")
    api_load.setup_django()
    load = os.getloadavg()
    out = run(args)
    from django.conf import settings
    from django.db import connection

    print(f"\nPOST /api/v1/recommendations/batch, {args.batch} learners a request, in one process (django.test.Client); "
          f"database {connection.vendor}, cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}, "
          f"attention window {api_load.policy_window(args) or 'none (full)'}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| batches | median s (wall) | learners/s (wall) | median s (process CPU) | learners/s (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, runs in out["timed"].items():
        wall, cpu = np.median([w for w, _ in runs]), np.median([c for _, c in runs])
        print(f"| {name} ({len(runs)}) | {wall:.3f} | {args.batch / wall:,.0f} | {cpu:.3f} | {args.batch / cpu:,.0f} |")
    if not args.profiled:
        return
    print(f"\nProfiled (cProfile, {args.profiled} batches), ms per batch: cumulative time by stage\n")
    print("| stage | ms |")
    print("| --- | ---: |")
    for stage, ms in out["stages"].items():
        print(f"| {stage} | {ms:.1f} |")
    print("\nSelf time by part, ms per batch\n")
    print("| part | ms |")
    print("| --- | ---: |")
    for name in [p for p, _ in PARTS] + [OTHER]:
        print(f"| {name} | {out['parts'].get(name, 0.0):.1f} |")
    print(f"| total | {sum(out['parts'].values()):.1f} |")
    if out["top"]:
        print("\nFunctions with the most self time, ms per batch\n")
        print("| function | ms |")
        print("| --- | ---: |")
        for name, ms in out["top"]:
            print(f"| `{name}` | {ms:.1f} |")


if __name__ == "__main__":
    main()
