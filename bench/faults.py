"""Benchmark: the REST API while its cache or broker fails; prints a Markdown table per phase.

    [DATABASE_URL=postgres://postgres@127.0.0.1:5432/crl_faults] [CACHE_URL=redis://127.0.0.1:6379/12] \\
        .venv/bin/python bench/faults.py [--seconds 10] [--requests 3000] [--concurrency 4]

Seeds a curriculum as bench/api_load.py does (its `seed`, server and readiness helpers are reused), then runs
the same bounded load in each phase against a fresh `gunicorn crlsite.wsgi` on 127.0.0.1: recommendations on
`--concurrency` keep-alive connections and review batches on one, until `--requests` requests are sent or
`--seconds` have passed. Phases:

- baseline: the configured cache (CACHE_URL, or local memory) and broker;
- cache dead: CACHE_URL points at a closed loopback port (connections refused);
- cache hung: CACHE_URL points at a local server that accepts connections and never answers;
- broker dead / broker hung: the configured cache; half way through, this process promotes the other policy
  version with the Celery broker at a closed port / at the hung server (the re-encoding enqueue must give up);
- import: the configured cache and broker; this process imports a `--import-rows` review log (Duolingo HLR CSV,
  the load's own learners and concepts, times in the past) into the curriculum under load, through the import
  service the admin's import job runs (all or nothing); the phase lasts until the import has finished (at least
  `--seconds`, without the request cap). Compare its review-post p99 with the baseline's.

`--only baseline,import` runs only the phases whose names start with those words.

Each phase reports requests, errors (any non-2xx or failed request), p50/p99 latency and, where a promotion
ran, how long `promote_policy` took from call to return (its on-commit enqueue included). Loopback only.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import (  # noqa: E402
    HOST, RECOMMEND, REVIEWS, Connection, Recorder, cleanup, free_port, seed, setup_django, start_server, wait_ready,
)


class HungServer:
    """Accepts every connection on loopback and never sends a byte: a cache or broker that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@dataclasses.dataclass
class Phase:
    name: str
    cache_url: str | None  # None: as configured
    broker_url: str | None = None  # set: promote half way through with this broker
    import_rows: int = 0  # set: import a review log of this many rows during the load


@dataclasses.dataclass
class Result:
    elapsed: float
    recommendations: Recorder
    reviews: Recorder
    promotion_s: float | None = None
    import_s: float | None = None
    import_summary: str = ""


async def bounded_load(args, port: int, seeded: dict, promote=None, background=None) -> Result:
    """Recommendations and review batches until args.requests are sent or args.seconds pass; `promote` (a
    blocking callable returning seconds) runs in a thread half way through. `background` (a blocking callable
    returning (seconds, summary)) runs in a thread from the start, and the load goes on (uncapped) until it
    returns and args.seconds have passed."""
    rng = random.Random(1)
    key, learners, concepts = seeded["curriculum"].key, seeded["learners"], seeded["concepts"]
    recs, reviews = Recorder(), Recorder()
    sent = [0]
    deadline = time.monotonic() + args.seconds

    def rec_body() -> bytes:
        return json.dumps({"curriculum": key, "learner": rng.choice(learners)}).encode()

    def review_body() -> bytes:
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        return json.dumps([{"curriculum": key, "learner": rng.choice(learners), "concept": rng.choice(concepts),
                            "correct": True, "grade": 3, "reviewed_at": now, "idempotency_key": uuid.uuid4().hex}
                           for _ in range(5)]).encode()

    background_done = asyncio.Event()

    def more() -> bool:
        if background is not None:
            return not (background_done.is_set() and time.monotonic() >= deadline)
        return sent[0] < args.requests and time.monotonic() < deadline

    async def loop(path: str, make_body, expected: int, recorder: Recorder) -> None:
        conn = Connection(port, seeded["token"])
        while more():
            sent[0] += 1
            started = time.monotonic()
            try:
                status, payload = await asyncio.wait_for(conn.post(path, make_body()), timeout=30)
            except Exception as exc:  # noqa: BLE001 - counted as an error; a fresh connection next time
                conn.close()
                recorder.error(f"{type(exc).__name__}: {exc}")
                continue
            recorder.latencies.append((time.monotonic() - started) * 1000)
            if status != expected:
                recorder.error(f"HTTP {status}: {payload[:200]!r}")
        conn.close()

    t0 = time.monotonic()
    side = None
    if background is not None:
        async def run_background():
            try:
                return await asyncio.to_thread(background)
            finally:
                background_done.set()
        side = asyncio.ensure_future(run_background())
    loops = [loop(RECOMMEND, rec_body, 200, recs) for _ in range(args.concurrency)]
    loops.append(loop(REVIEWS, review_body, 201, reviews))
    promotion = None
    if promote is not None:
        async def promote_half_way():
            await asyncio.sleep(args.seconds / 2)
            return await asyncio.to_thread(promote)
        promotion = asyncio.ensure_future(promote_half_way())
    await asyncio.gather(*loops)
    promotion_s = await promotion if promotion is not None else None
    import_s, summary = await side if side is not None else (None, "")
    return Result(time.monotonic() - t0, recs, reviews, promotion_s, import_s, summary)


def write_import_file(path: Path, *, rows: int, seeded: dict) -> None:
    """A Duolingo HLR CSV of `rows` sessions by the load's learners on its concepts, 30 to 20 days ago."""
    rng = np.random.default_rng(7)
    learners, concepts = np.array(seeded["learners"]), np.array(seeded["concepts"])
    start = time.time() - 30 * 86400
    t = np.sort(rng.uniform(start, start + 10 * 86400, rows)).astype(np.int64)
    who, what = rng.integers(0, len(learners), rows), rng.integers(0, len(concepts), rows)
    seen = rng.integers(1, 4, rows)
    right = np.minimum(seen, rng.binomial(seen, 0.8))
    with open(path, "w") as fh:
        fh.write("p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,"
                 "history_seen,history_correct,session_seen,session_correct\n")
        for i in range(rows):
            c = concepts[what[i]]
            fh.write(f"0.9,{t[i]},3600,{learners[who[i]]},es,en,{c},{c}/word,1,1,{seen[i]},{right[i]}\n")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_phase(args, phase: Phase, seeded: dict, workdir: Path) -> Result:
    from django.db import connection

    from crlsite.celery import app
    from curriculum.models import PolicyModel
    from curriculum.services import promote_policy

    saved_cache = os.environ.get("CACHE_URL")
    if phase.cache_url is not None:
        os.environ["CACHE_URL"] = phase.cache_url
    port, log_path = free_port(), workdir / f"gunicorn-{phase.name.replace(' ', '-')}.log"
    server = start_server(args, port, log_path)  # the server reads CACHE_URL from this environment
    if saved_cache is None:
        os.environ.pop("CACHE_URL", None)
    else:
        os.environ["CACHE_URL"] = saved_cache
    promote = None
    if phase.broker_url is not None:
        def promote() -> float:
            saved_broker = app.conf.broker_url
            app.conf.broker_url = phase.broker_url
            try:
                target = PolicyModel.objects.filter(curriculum=seeded["curriculum"]).exclude(status="active").order_by("version").first()
                started = time.monotonic()
                promote_policy(policy=target, force=True, reason=f"bench/faults.py: {phase.name}")
                return time.monotonic() - started
            finally:
                app.conf.broker_url = saved_broker
                connection.close()  # this thread's database connection
    background = None
    if phase.import_rows:
        from curriculum.reviews.importers.service import import_review_file

        path = workdir / f"import-{phase.import_rows}.csv"
        write_import_file(path, rows=phase.import_rows, seeded=seeded)

        def background() -> tuple[float, str]:
            started = time.monotonic()
            try:
                result = import_review_file(path=path, curriculum_key=seeded["curriculum"].key)
            finally:
                connection.close()  # this thread's database connection
            return time.monotonic() - started, (f"{result.rows} rows, {result.created} created, "
                                                f"{result.duplicates} duplicates, {result.learners} learners")
    try:
        wait_ready(server, port, seeded["token"], seeded["curriculum"].key, log_path, timeout=60)
        return asyncio.run(bounded_load(args, port, seeded, promote, background))
    finally:
        stop(server)


def table(phase: Phase, result: Result) -> str:
    lines = [f"### {phase.name}", "", "| endpoint | requests | errors (non-2xx) | p50 ms | p99 ms |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, rec in (("POST /api/v1/recommendations", result.recommendations),
                      ("POST /api/v1/reviews (5/batch)", result.reviews)):
        lat = np.asarray(rec.latencies)
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if lat.size else (float("nan"),) * 2
        lines.append(f"| {name} | {lat.size} | {rec.errors} | {p50:.1f} | {p99:.1f} |")
    promotion = "none" if result.promotion_s is None else f"{result.promotion_s:.3f} s"
    lines += ["", f"{result.elapsed:.1f} s; promotion (call to return): {promotion}"]
    if result.import_s is not None:
        lines[-1] += f"; import: {result.import_s:.1f} s ({result.import_summary})"
    for rec in (result.recommendations, result.reviews):
        lines += [f"- error sample: `{s}`" for s in rec.samples[:3]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="longest duration of each phase")
    parser.add_argument("--requests", type=int, default=3000, help="most requests sent in each phase")
    parser.add_argument("--concurrency", type=int, default=4, help="recommendation connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--history", type=int, default=20, help="reviews per learner before the run")
    parser.add_argument("--concepts", type=int, default=20)
    parser.add_argument("--import-rows", type=int, default=300_000, help="rows of the import phase's review log")
    parser.add_argument("--only", default="", help="comma-separated phase name prefixes, e.g. baseline,import")
    parser.add_argument("--keep", action="store_true", help="keep the bench curriculum and its data afterwards")
    args = parser.parse_args()

    setup_django()
    from django.conf import settings
    from django.db import connection

    hung = HungServer()
    dead_port = free_port()  # bound, then closed: nothing listens there
    phases = [
        Phase("baseline", None),
        Phase("cache dead (connection refused)", f"redis://{HOST}:{dead_port}/0"),
        Phase("cache hung (accepts, never answers)", f"redis://{HOST}:{hung.port}/0"),
        Phase("broker dead during a promotion", None, broker_url=f"redis://{HOST}:{dead_port}/0"),
        Phase("broker hung during a promotion", None, broker_url=f"redis://{HOST}:{hung.port}/0"),
        Phase(f"import of {args.import_rows:,} rows", None, import_rows=args.import_rows),
    ]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        phases = [p for p in phases if any(p.name.startswith(w) for w in wanted)]
    key = f"faults-{uuid.uuid4().hex[:8]}"
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database {connection.vendor}; configured cache {cache}; gunicorn -w {args.workers} --threads "
          f"{args.threads}; each phase at most {args.requests} requests or {args.seconds:.0f} s; {os.cpu_count()} CPUs\n")
    try:
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
            seeded = seed(args, key, Path(tmp))
            for phase in phases:
                print(table(phase, run_phase(args, phase, seeded, Path(tmp))) + "\n", flush=True)
    finally:
        hung.close()
        if not args.keep:
            cleanup(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
