"""Benchmark: where one recommendation's time goes, before and after the lean path; prints Markdown tables.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crl_bench [CACHE_URL=redis://127.0.0.1:6379/12] \\
        .venv/bin/python bench/serving_profile.py [--requests 2000] [--learners 1000] [--top N] [--dump FILE]

Seeds the api_load bench's curriculum (20 concepts, learners with a 30-review history, the default Decision
Transformer size), then sends `--requests` single recommendations in one process through the whole Django stack
(middleware, token authentication, throttle, view, JSON rendering; `django.test.Client`, no HTTP server), one at a
time, in each configuration, alternating blocks so that a shared machine slows them alike:

- `before`: the throttle adds every request to the shared cache (one round trip per request), and the garbage
  collector's full passes walk the whole heap, as before issue 23;
- `after`: the throttle counts in the process and adds its counts in batches (curriculum/api/throttling.py), and
  the heap loaded at start-up is frozen out of the collector's passes as crlsite/wsgi.py does (crlsite/heap.py).
- `lean`: as `after`, through the lean path of the endpoint (curriculum/api/lean_path.py, as crlsite/wsgi.py serves
  it) with a WSGI environ instead of the test client: Django's handler and REST framework's view machinery skipped.

A full collection is also timed directly, with the heap unfrozen and frozen: the stall a full pass puts on the
request it lands on (one in a few thousand requests; too rare to show in a short run's p99).

For each: latency p50/p99/max, the median CPU time a request (`time.thread_time`), garbage collections (gen 2 counted and timed through `gc.callbacks`) and a cProfile of
the same requests, its self time summed per part (DTLite, throttle, query, learner state, Django/DRF and the rest)
per request. Profiling slows Python-heavy parts more than NumPy's: compare the parts between columns, and take
latencies from the unprofiled rows. Loopback only.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
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

# (part, substrings of a profiled function's file, first match wins)
PARTS = [
    ("DTLite", ("training/rl/dtlite.py",)),
    ("throttle (cache)", ("curriculum/api/throttling.py", "/redis/", "django/core/cache/")),
    ("query (database)", ("/psycopg/", "django/db/", "/sqlite3/", "curriculum/selectors.py")),
    ("learner state (decode, encode)", ("training/rl/encoder/", "curriculum/state_specs.py", "/json/")),
    ("Django/DRF", ("/django/", "/rest_framework/", "/drf_spectacular/")),
]
OTHER = "other (serving, NumPy glue, builtins)"


class GcTimer:
    """Counts and times the collector's passes (gc.callbacks): a gen-2 pass over a big heap is a latency spike."""

    def __init__(self):
        self.started = 0.0
        self.pauses: list[tuple[int, float]] = []

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self.started) * 1000))


def part_of(filename: str) -> str:
    for name, needles in PARTS:
        if any(n in filename for n in needles):
            return name
    return OTHER


def profile_parts(profile: cProfile.Profile, requests: int) -> dict[str, float]:
    """Self time per part, ms per request."""
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():
        part = part_of(filename)
        totals[part] = totals.get(part, 0.0) + tottime
    return {k: v * 1000 / requests for k, v in totals.items()}


def run(args) -> None:
    from django.test import Client

    from curriculum.api import throttling

    key = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="serving-profile-") as tmp:
        seeded = api_load.seed(argparse.Namespace(concepts=20, learners=args.learners, history=30), key, Path(tmp))
        try:
            client = Client(HTTP_AUTHORIZATION=f"Token {seeded['token']}", HTTP_HOST="127.0.0.1")
            rng = random.Random(1)

            def body() -> str:
                learner = rng.choice(seeded["learners"]) if rng.random() < 0.9 else f"{key}-new{rng.randrange(10**6)}"
                return json.dumps({"curriculum": key, "learner": learner})

            from django.core.handlers.wsgi import WSGIHandler

            from curriculum.api.lean_path import LeanRecommendations

            lean = LeanRecommendations(WSGIHandler())  # as crlsite/wsgi.py serves, without an HTTP server
            cpu: dict[str, list[float]] = {}

            def through_lean_path() -> tuple[int, bytes]:
                raw = body().encode()
                environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/recommendations", "SCRIPT_NAME": "",
                           "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
                           "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http",
                           "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(raw)),
                           "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": f"Token {seeded['token']}"}
                answer = []
                chunks = lean(environ, lambda status, headers, *exc: answer.append(status))
                try:
                    content = b"".join(chunks)
                finally:
                    chunks.close()
                return int(answer[0].split()[0]), content

            def one(name: str) -> float:
                t, c = time.perf_counter(), time.thread_time()
                if name == "lean":
                    status, content = through_lean_path()
                else:
                    response = client.post("/api/v1/recommendations", body(), content_type="application/json")
                    status, content = response.status_code, response.content
                elapsed = (time.perf_counter() - t) * 1000
                cpu.setdefault(name, []).append((time.thread_time() - c) * 1000)
                if status != 200:
                    raise SystemExit(f"HTTP {status}: {content[:300]!r}")
                return elapsed

            from crlsite.heap import freeze_loaded_heap

            configs = {"before": (0.0, False), "after": (throttling.FLUSH_FRACTION, True),
                       "lean": (throttling.FLUSH_FRACTION, True)}

            def use(name: str) -> None:
                throttling.FLUSH_FRACTION, frozen = configs[name]
                gc.freeze() if frozen else gc.unfreeze()

            for name in ("after", "lean"):  # warm-up: the policy loaded, connections open, every code path seen
                for _ in range(50):
                    one(name)
            frozen_objects = freeze_loaded_heap()
            full_pass = {}
            for name in configs:
                use(name)
                t = time.perf_counter()
                gc.collect()
                full_pass[name] = (time.perf_counter() - t) * 1000
            latencies = {name: [] for name in configs}
            gcs = {name: GcTimer() for name in configs}
            profiles = {name: cProfile.Profile() for name in configs}
            block = 100
            cpu.clear()
            for start in range(0, len(configs) * args.requests, block):  # unprofiled, alternating blocks
                name = list(configs)[(start // block) % len(configs)]
                use(name)
                gc.callbacks.append(gcs[name])
                try:
                    latencies[name].extend(one(name) for _ in range(block))
                finally:
                    gc.callbacks.remove(gcs[name])
            for name in configs:  # profiled, fewer
                use(name)
                profiles[name].enable()
                for _ in range(args.profiled):
                    one(name)
                profiles[name].disable()
            use("after")
        finally:
            from curriculum.experiments import recommendation_log

            recommendation_log.writer().flush(timeout=30)  # its rows name the versions cleanup deletes
            api_load.cleanup(key)

    from django.conf import settings
    from django.db import connection

    print(f"\nOne recommendation through the Django stack (`before`, `after`) and the lean path (`lean`) in one process; database {connection.vendor}, cache "
          f"{settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}, {os.cpu_count()} CPUs, "
          f"{args.requests} requests per column (alternating blocks of 100), cProfile over {args.profiled}.\n")
    print("| | " + " | ".join(configs) + " |")
    print("| --- |" + " --- |" * len(configs))
    for label, fn in [("p50 ms", lambda a: np.percentile(a, 50)), ("p99 ms", lambda a: np.percentile(a, 99)),
                      ("max ms", np.max), ("mean ms", np.mean)]:
        print(f"| {label} | " + " | ".join(f"{fn(np.asarray(latencies[n])):.2f}" for n in configs) + " |")
    print("| CPU ms a request (thread time), median | "
          + " | ".join(f"{np.median(cpu[n][:len(latencies[n])]):.3f}" for n in configs) + " |")
    for label, fn in [("gc passes (gen 2)", lambda p: f"{len(p)} ({sum(g == 2 for g, _ in p)})"),
                      ("gc longest pass ms", lambda p: f"{max((ms for _, ms in p), default=0):.2f}")]:
        print(f"| {label} | " + " | ".join(fn(gcs[n].pauses) for n in configs) + " |")
    print("| a full collection, timed, ms | " + " | ".join(f"{full_pass[n]:.1f}" for n in configs) + " |")
    print(f"\n({frozen_objects:,} objects frozen after the warm-up; this process also holds the seeding's imports, "
          "torch included, which a web worker does not.)")
    parts = {n: profile_parts(profiles[n], args.profiled) for n in configs}
    print("\nProfiled self time per request, ms (cProfile's overhead included):\n")
    print("| part | " + " | ".join(configs) + " |")
    print("| --- |" + " --- |" * len(configs))
    for name in [p for p, _ in PARTS] + [OTHER]:
        print(f"| {name} | " + " | ".join(f"{parts[n].get(name, 0.0):.3f}" for n in configs) + " |")
    print("| total | " + " | ".join(f"{sum(parts[n].values()):.3f}" for n in configs) + " |")
    if args.dump:
        profiles["lean"].dump_stats(args.dump)
    if args.top:
        print("\nFunctions with the most self time in `lean`, ms per request:\n")
        print("| function | ms |")
        print("| --- | ---: |")
        stats = sorted(pstats.Stats(profiles["lean"]).stats.items(), key=lambda item: -item[1][2])[:args.top]
        for (filename, line, name), (_, _, tottime, _, _) in stats:
            print(f"| `{Path(filename).name}:{line} {name}` | {tottime * 1000 / args.profiled:.3f} |")
    slow = [(ms, n) for n in configs for ms in latencies[n] if ms > 5 * np.median(latencies[n])]
    print(f"\nRequests over 5x their column's median: {len(slow)}; gen-2 collections: "
          + ", ".join(f"{n} {[round(ms, 1) for g, ms in gcs[n].pauses if g == 2]}" for n in configs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="unprofiled requests per configuration")
    parser.add_argument("--profiled", type=int, default=300, help="profiled requests per configuration")
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with the most self time")
    parser.add_argument("--dump", metavar="FILE", help="also write the `lean` profile to FILE (pstats format: "
                                                      "`python -m pstats FILE`, e.g. its callers view)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        print("note: DATABASE_URL is not set: running on the SQLite default; the issue's figures are PostgreSQL's")
    api_load.setup_django()
    run(args)


if __name__ == "__main__":
    main()
