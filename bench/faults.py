"""Benchmark: the service while its cache, broker, database, disk or a worker fails; prints a Markdown table per phase
and, at the end, one table of faults: what clients saw and what was lost.

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
- database refusing: the server's DATABASE_URL points at a closed loopback port (PostgreSQL stopped);
- database frozen: the server reaches PostgreSQL through a TCP proxy in this process that, after a third of
  the phase, forwards nothing either way for `--freeze-seconds` while keeping every connection open (PostgreSQL
  stopped with SIGSTOP); the server runs with DB_STATEMENT_TIMEOUT_SECONDS=2 (client-side deadline 7 s),
  DB_CONNECT_TIMEOUT_SECONDS=2;
- disk full (no load): a policy version registered into an artifact storage on a tmpfs (root; else the free
  space is only reported small) with less room than its files: refused before writing; then the disk fills part-way
  (the space check passes, the write fails); then the room is freed and the same registration is made;
- pool process killed (no load): a real `celery worker --pool=prefork -c 1` on this database and broker; a synthetic
  generation job is launched, its pool process is killed with SIGKILL once it is writing, and the time until the job
  shows failed is measured, with what it left in the review log;
- broker down at launch (no load): a generation job launched with the broker at a closed port (its message lost), a
  worker running (defaults: no beat): the time until it has run.

`--only baseline,import` runs only the phases whose names start with those words.

Each load phase reports requests, errors (any non-2xx or failed request), p50/p99/max latency, the statuses
answered and, where a promotion ran, how long `promote_policy` took from call to return (its on-commit enqueue
included); "lost" counts reviews answered 201 whose idempotency key is not stored afterwards. Loopback only.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import (  # noqa: E402
    HOST, RECOMMEND, REVIEWS, Connection, Recorder, cleanup, free_port, seed, setup_django, start_server, wait_ready,
)
from loopback import FreezableProxy, HungServer  # noqa: E402


@dataclasses.dataclass
class Phase:
    name: str
    cache_url: str | None  # None: as configured
    broker_url: str | None = None  # set: promote half way through with this broker
    import_rows: int = 0  # set: import a review log of this many rows during the load
    server_env: dict[str, str] = dataclasses.field(default_factory=dict)  # the server's environment, changed
    freeze_s: float = 0.0  # set: the server reaches the database through a FreezableProxy frozen this long
    fault: str = ""  # the summary's first column


@dataclasses.dataclass
class Result:
    elapsed: float
    recommendations: Recorder
    reviews: Recorder
    promotion_s: float | None = None
    import_s: float | None = None
    import_summary: str = ""
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lost: int = 0  # reviews answered 201 whose idempotency key is not stored afterwards
    acknowledged: int = 0  # reviews answered 201


async def bounded_load(args, port: int, seeded: dict, promote=None, background=None) -> Result:
    """Recommendations and review batches until args.requests are sent or args.seconds pass; `promote` (a
    blocking callable returning seconds) runs in a thread half way through. `background` (a blocking callable
    returning (seconds, summary)) runs in a thread from the start, and the load goes on (uncapped) until it
    returns and args.seconds have passed."""
    rng = random.Random(1)
    key, learners, concepts = seeded["curriculum"].key, seeded["learners"], seeded["concepts"]
    recs, reviews = Recorder(), Recorder()
    statuses: collections.Counter = collections.Counter()
    acknowledged: list[str] = []  # idempotency keys of reviews answered 201
    sent = [0]
    deadline = time.monotonic() + args.seconds

    def rec_body() -> bytes:
        return json.dumps({"curriculum": key, "learner": rng.choice(learners)}).encode()

    def review_body() -> bytes:
        # each review its own identity (a millisecond apart), so that every acknowledged key is stored unless lost
        now = dt.datetime.now(dt.timezone.utc)
        return json.dumps([{"curriculum": key, "learner": rng.choice(learners), "concept": rng.choice(concepts),
                            "correct": True, "grade": 3, "reviewed_at": (now - dt.timedelta(milliseconds=i)).isoformat(),
                            "idempotency_key": uuid.uuid4().hex} for i in range(5)]).encode()

    def keys_of(body: bytes) -> list[str]:
        return [item["idempotency_key"] for item in json.loads(body)]

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
            body = make_body()
            try:
                status, payload = await asyncio.wait_for(conn.post(path, body), timeout=30)
            except Exception as exc:  # noqa: BLE001 - counted as an error; a fresh connection next time
                conn.close()
                recorder.error(f"{type(exc).__name__}: {exc}")
                statuses[f"{type(exc).__name__}"] += 1
                continue
            recorder.latencies.append((time.monotonic() - started) * 1000)
            statuses[str(status)] += 1
            if path == REVIEWS and status == 201:
                acknowledged.extend(keys_of(body))
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
    stored = await asyncio.to_thread(stored_keys, acknowledged)
    return Result(time.monotonic() - t0, recs, reviews, promotion_s, import_s, summary, statuses,
                  lost=len(acknowledged) - stored, acknowledged=len(acknowledged))


def stored_keys(keys: list[str]) -> int:
    """How many of these idempotency keys are stored."""
    from django.db import connection

    from curriculum.models import ReviewLog

    try:
        return sum(ReviewLog.objects.filter(idempotency_key__in=keys[i:i + 5000]).count()
                   for i in range(0, len(keys), 5000))
    finally:
        connection.close()  # this thread's connection


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

    proxy = None
    server_env = dict(phase.server_env)
    if phase.cache_url is not None:
        server_env["CACHE_URL"] = phase.cache_url
    if phase.freeze_s:
        proxy = FreezableProxy(connection.settings_dict["HOST"] or HOST, int(connection.settings_dict["PORT"] or 5432))
        server_env["DATABASE_URL"] = database_url(port=proxy.port)
    port, log_path = free_port(), workdir / f"gunicorn-{phase.name.replace(' ', '-')}.log"
    with environment(server_env):
        server = start_server(args, port, log_path)  # the server reads its settings from this environment
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
    if proxy is not None:
        def background() -> tuple[float, str]:
            time.sleep(args.seconds / 3)
            proxy.frozen.set()
            time.sleep(phase.freeze_s)
            proxy.frozen.clear()
            return phase.freeze_s, f"the database frozen for {phase.freeze_s:.0f} s after {args.seconds / 3:.0f} s"
    try:
        if "DATABASE_URL" in phase.server_env:  # a database that refuses: the server answers, but never 200
            wait_listening(server, port, log_path)
        else:
            wait_ready(server, port, seeded["token"], seeded["curriculum"].key, log_path, timeout=60)
        return asyncio.run(bounded_load(args, port, seeded, promote, background))
    finally:
        stop(server)
        if proxy is not None:
            proxy.close()


@contextlib.contextmanager
def environment(changes: dict[str, str]):
    """This process's environment with ``changes``, restored afterwards."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def database_url(*, port: int) -> str:
    """DATABASE_URL of this process's database, at another loopback port (a proxy, a closed port)."""
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER'] or 'postgres'}@{HOST}:{port}/{s['NAME']}"


def wait_listening(server: subprocess.Popen, port: int, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            socket.create_connection((HOST, port), timeout=1).close()
            return
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not listen within {timeout:.0f} s")


def table(phase: Phase, result: Result) -> str:
    lines = [f"### {phase.name}", "", "| endpoint | requests | errors (non-2xx) | p50 ms | p99 ms | max ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, rec in (("POST /api/v1/recommendations", result.recommendations),
                      ("POST /api/v1/reviews (5/batch)", result.reviews)):
        lat = np.asarray(rec.latencies)
        p50, p99, top = (np.percentile(lat, 50), np.percentile(lat, 99), lat.max()) if lat.size else (float("nan"),) * 3
        lines.append(f"| {name} | {lat.size} | {rec.errors} | {p50:.1f} | {p99:.1f} | {top:.1f} |")
    promotion = "none" if result.promotion_s is None else f"{result.promotion_s:.3f} s"
    lines += ["", f"{result.elapsed:.1f} s; promotion (call to return): {promotion}; answers: {statuses(result)}; "
                  f"reviews acknowledged {result.acknowledged}, lost {result.lost}"]
    if result.import_s is not None:
        lines[-1] += f"; {'import' if phase.import_rows else 'fault'}: {result.import_s:.1f} s ({result.import_summary})"
    for rec in (result.recommendations, result.reviews):
        lines += [f"- error sample: `{s}`" for s in rec.samples[:3]]
    return "\n".join(lines)


def statuses(result: Result) -> str:
    return ", ".join(f"{status} x {n}" for status, n in sorted(result.statuses.items()))


def load_summary(phase: Phase, result: Result) -> tuple[str, str, str]:
    """(fault, what clients saw, what was lost) of a load phase."""
    lat = np.asarray(result.recommendations.latencies + result.reviews.latencies)
    slowest = f"; slowest {lat.max() / 1000:.1f} s" if lat.size else ""
    return (phase.fault or phase.name, f"{statuses(result)}{slowest}",
            f"{result.lost} of {result.acknowledged} acknowledged reviews")


# ------------------------------------------------------------------------------------------ no-load phases
def disk_full(seeded: dict, workdir: Path) -> tuple[str, str, str]:
    """A policy version registered into an artifact storage with less room than its files (see the module)."""
    from django.conf import settings
    from django.test.utils import override_settings

    from curriculum import storage as artifact_files
    from curriculum.services import register_policy
    from curriculum.storage import StorageFull

    folder = workdir / "policy-1"
    size = sum(f.stat().st_size for f in folder.iterdir())
    config = json.loads((folder / "dt_lite_config.json").read_text())
    disk = workdir / "tiny-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size + (1 << 20)}", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    filler = disk / "someone-elses.bin"
    if mounted:
        filler.write_bytes(b"\0" * ((1 << 20) + size // 2))  # about half the files' size stays free
    real_free = artifact_files._disk_free
    seen = []

    def register() -> str:
        try:
            policy = register_policy(curriculum=seeded["curriculum"], artifact_dir=folder, config=config)
        except StorageFull as exc:
            said = str(exc)
            return ("refused before writing (StorageFull: ..." + said[said.index(": ") + 1:said.index(";")] + ")"
                    if said.startswith("not enough space") else "ran out of space part-way (StorageFull)")
        return f"registered v{policy.version}"

    def left() -> int:
        return sum(1 for p in disk.rglob("*") if p.is_file() and p != filler)

    storages = {"artifacts": {"BACKEND": "curriculum.storage.WholeFileSystemStorage", "OPTIONS": {"location": str(disk)}}}
    try:
        with override_settings(STORAGES={**settings.STORAGES, **storages},
                               CRL_STORAGE_RESERVE_BYTES=0):
            if not mounted:  # no tmpfs without root: the free space is only reported small
                artifact_files._disk_free = lambda path: size // 2
            seen.append(f"{register()}, {left()} files left")
            if mounted:  # the check passes (as when another writer fills the disk after it): the disk runs out
                artifact_files._disk_free = lambda path: 1 << 40
                seen.append(f"{register()}, {left()} files left")
                filler.unlink()
            artifact_files._disk_free = real_free
            seen.append(f"room freed: {register()}, {left()} files")
    finally:
        artifact_files._disk_free = real_free
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    where = f"a {(size + (1 << 20)) / 2**20:.1f} MiB tmpfs" if mounted else "free space reported small (no tmpfs: not root)"
    return (f"disk full: a {size / 2**20:.1f} MiB policy version into {where}", "; ".join(seen),
            "nothing half-written (no partial or truncated file)")


def start_worker(workdir: Path) -> subprocess.Popen:
    """A real `celery worker --pool=prefork -c 1` (queue default) on this database and broker, ready."""
    log_path = workdir / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "crlsite", "worker", "-Q", "default", "-c", "1",
             "--pool=prefork", "-n", f"faults-{uuid.uuid4().hex[:6]}@%h", "--without-mingle", "--without-gossip",
             "--loglevel=INFO"], cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log, stderr=subprocess.STDOUT)
    worker.log_path = log_path
    until(lambda: " ready." in log_path.read_text(errors="replace") or worker.poll() is not None, 90, "the worker")
    if worker.poll() is not None:
        raise SystemExit(f"the worker exited:\n{log_path.read_text()[-3000:]}")
    return worker


def until(predicate, timeout: float, what: str, interval: float = 0.1) -> float:
    """Seconds until ``predicate()`` held (polled); SystemExit after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def pool_process_killed(args, seeded: dict, worker: subprocess.Popen) -> tuple[str, str, str]:
    """A generation job's pool process killed with SIGKILL while it writes its reviews."""
    from curriculum.models import ReviewLog
    from training import jobs

    job = jobs.launch_synthetic_generation(curriculum=seeded["curriculum"], num_users=args.kill_users,
                                           interactions=200, seed=int(time.time()) % 100_000)

    def writing() -> bool:
        job.refresh_from_db()
        return job.status == "running" and job.phase == "writing reviews"

    until(writing, 300, f"{job} to write its reviews")
    (pool,) = [int(p) for p in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
    os.kill(pool, signal.SIGKILL)

    def failed() -> bool:
        job.refresh_from_db()
        return job.is_finished

    seconds = until(failed, 600, f"{job} to show failed")
    rows = ReviewLog.objects.filter(batch=job.batch_tag).count()
    return (f"pool process killed (SIGKILL) while a generation job wrote {args.kill_users * 200:,} reviews",
            f"the job {job.status} {seconds:.1f} s after the kill: \"{job.error.split(';')[0][:90]}...\"",
            f"{rows} reviews of that job stored (all or nothing); the worker lives on: {worker.poll() is None}")


def broker_down_at_launch(seeded: dict, dead_port: int) -> tuple[str, str, str]:
    """A job launched while the broker refuses (its message lost); a worker runs, no beat."""
    from crlsite.celery import app
    from training import jobs

    saved, dead = app.conf.broker_url, f"redis://{HOST}:{dead_port}/0"
    app.conf.broker_url = dead
    try:  # Celery reads CELERY_BROKER_URL from the environment before its configuration: both
        with environment({"CELERY_BROKER_URL": dead}):
            job = jobs.launch_synthetic_generation(curriculum=seeded["curriculum"], num_users=3, interactions=3, seed=7)
    finally:
        app.conf.broker_url = saved

    def ran() -> bool:
        job.refresh_from_db()
        return job.is_finished

    seconds = until(ran, 300, f"{job} to run")
    return ("broker down at launch (worker up, no beat; CRL_JOB_REQUEUE_SECONDS 30, CRL_JOB_WATCH_SECONDS 10)",
            f"the job {job.status} {seconds:.1f} s after its launch (published again by the worker's watch)",
            "nothing")


def cleanup_jobs(key: str) -> None:
    """The bench curriculum's jobs, and the learners its generation jobs made (before api_load.cleanup)."""
    from curriculum.models import Learner
    from training.jobs import JOB_MODELS
    from training.models import SyntheticGenerationJob

    for job in SyntheticGenerationJob.objects.filter(curriculum__key=key):
        Learner.objects.filter(external_id__startswith=f"syn{job.pk}-u").delete()
    for model in JOB_MODELS:
        model.objects.filter(curriculum__key=key).delete()


def summary(rows: list[tuple[str, str, str]]) -> str:
    lines = ["### summary", "", "| fault | what clients saw | what was lost |", "| --- | --- | --- |"]
    lines += [f"| {fault} | {saw} | {lost} |" for fault, saw, lost in rows]
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
    parser.add_argument("--freeze-seconds", type=float, default=10.0, help="how long the database is frozen")
    parser.add_argument("--kill-users", type=int, default=2000, help="learners (x 200 reviews) of the killed job")
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
        Phase("database refusing (closed port)", None, server_env={"DATABASE_URL": "postgres://u@127.0.0.1:1/none"},
              fault="database refusing connections (stopped)"),
        Phase(f"database frozen for {args.freeze_seconds:.0f} s (accepts, never answers)", None,
              freeze_s=args.freeze_seconds, server_env={"DB_STATEMENT_TIMEOUT_SECONDS": "2", "DB_CONNECT_TIMEOUT_SECONDS": "2"},
              fault=f"database frozen {args.freeze_seconds:.0f} s (SIGSTOP-like, via a proxy)"),
    ]
    extra = ["disk full", "pool process killed", "broker down at launch"]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        phases = [p for p in phases if any(p.name.startswith(w) for w in wanted)]
        extra = [e for e in extra if any(e.startswith(w) for w in wanted)]
    key = f"faults-{uuid.uuid4().hex[:8]}"
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"database {connection.vendor}; configured cache {cache}; gunicorn -w {args.workers} --threads "
          f"{args.threads}; each phase at most {args.requests} requests or {args.seconds:.0f} s; {os.cpu_count()} CPUs\n")
    try:
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
            seeded = seed(args, key, Path(tmp))
            rows = []
            for phase in phases:
                if phase.server_env.get("DATABASE_URL", "").startswith("postgres://u@127.0.0.1:1/"):
                    phase.server_env["DATABASE_URL"] = database_url(port=dead_port)
                if (phase.freeze_s or "DATABASE_URL" in phase.server_env) and connection.vendor != "postgresql":
                    print(f"### {phase.name}\n\nskipped: needs PostgreSQL (DATABASE_URL=postgres://...)\n")
                    continue
                result = run_phase(args, phase, seeded, Path(tmp))
                rows.append(load_summary(phase, result))
                print(table(phase, result) + "\n", flush=True)
            if "disk full" in extra:
                rows.append(disk_full(seeded, Path(tmp)))
            if {"pool process killed", "broker down at launch"} & set(extra):
                worker = start_worker(Path(tmp))
                try:
                    if "pool process killed" in extra:
                        rows.append(pool_process_killed(args, seeded, worker))
                    if "broker down at launch" in extra:
                        rows.append(broker_down_at_launch(seeded, dead_port))
                finally:
                    stop(worker)
            print(summary(rows), flush=True)
    finally:
        hung.close()
        if not args.keep:
            cleanup_jobs(key)
            cleanup(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
