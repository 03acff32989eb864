"""Benchmark: the REST API on a real server under load; prints req/s, p50, p99 and errors per endpoint.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crl_bench [CACHE_URL=redis://127.0.0.1:6379/12] \\
        .venv/bin/python bench/api_load.py [--seconds 60] [--concurrency 4] [--rate 0] [--workers CPUs] [--threads 2]

It seeds a curriculum (20 concepts, learners with a review history, two policy versions of the default
Decision Transformer size), starts the production server (`gunicorn crlsite.wsgi`) on 127.0.0.1, and runs
the load from a second process (asyncio, HTTP/1.1 keep-alive): recommendations on `--concurrency`
connections, as fast as they go (or at `--rate` per second, latency then counted from the scheduled send),
while review batches are posted at `--review-rate` per second; half way through, v2 is promoted. The target:
>= 300 recommendations/s with p99 <= 50 ms and no errors. `--seconds 5` is a smoke run. Loopback only.

`--wrk` sends the single endpoint's recommendations with wrk instead (Debian's `wrk`: one thread, `--concurrency`
keep-alive connections, closed loop, the same mix of bodies), the C load generator issue 23 names, which leaves the
cores to the server; the reviews (and the promotion's clock) stay with the asyncio generator, and the report adds
issue 23's target (>= 1,000 recommendations/s, p99 <= 20 ms).

`--log-ab` measures the recommendation log's cost: the same load against a server with `RECOMMENDATION_LOG_ENABLED=0`
then `=1` (no promotion; `--log-ab-rounds` pairs), and reports both rates; the target: on within 10% of off.

`--lean-ab` measures the lean path of the single endpoint (curriculum/api/lean_path.py): the same load (no promotion,
with `--wrk` or not) against fresh servers with `API_LEAN_PATH=0` then `=1`, `--ab-rounds` pairs alternating, one row
per run, then the medians and their ratio.

The server is gunicorn with the repository's gunicorn.conf.py (read from its working directory, the repository):
keep-alive connections closed after `WEB_KEEPALIVE_REQUESTS` requests, so that the load spreads over the workers.

`--batch N` sends the recommendations as batches of N learners to `POST /api/v1/recommendations/batch` instead
(90% known learners, 10% new ones per batch) and reports learners/s; the target is then >= 20,000 learners/s
with no errors. The server's `API_THROTTLE_RATE` is raised for it (unless set) so the budget does not cap the run.
A batch the server sheds (503 with Retry-After: the process already answers `API_BATCH_CONCURRENCY` batches, and
`API_BATCH_QUEUE` more wait for a slot) is waited out and sent again, as a push job would, and counted apart from
errors. The server takes those settings from this process's environment.
"""
from __future__ import annotations

import os

# one BLAS thread per process: the web workers' threads are the parallelism (set before numpy is imported)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only
RECOMMEND, REVIEWS = "/api/v1/recommendations", "/api/v1/reviews"
BATCH = RECOMMEND + "/batch"


# --------------------------------------------------------------------------------------- load generator
class Connection:
    """One keep-alive HTTP/1.1 connection; `post` reconnects once if the server closed it between requests."""

    def __init__(self, port: int, token: str):
        self.port, self.reader, self.writer = port, None, None
        self.head = f"Host: {HOST}:{port}\r\nAuthorization: Token {token}\r\nContent-Type: application/json\r\n"
        self.reconnects = 0
        self.retry_after: float | None = None  # the last response's Retry-After, seconds

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
            self.writer.write(request)
            await self.writer.drain()
            status_line = await self.reader.readline()
            if status_line:
                return await self._read_response(status_line)
            self.close()  # closed before answering (an idle keep-alive timeout): send again on a new one
            self.reconnects += 1
        raise ConnectionError("the server closed the connection twice without answering")

    async def _read_response(self, status_line: bytes) -> tuple[int, bytes]:
        status = int(status_line.split()[1])
        length, close = 0, False
        self.retry_after = None
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "retry-after":
                self.retry_after = float(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Recorder:
    def __init__(self):
        self.latencies: list[float] = []
        self.errors = 0
        self.shed = 0  # 503s with Retry-After (the batch endpoint's load shedding), waited out and sent again
        self.samples: list[str] = []

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(what[:300])


async def _load(cfg: dict, started, results) -> None:
    rng = random.Random(cfg["seed"])
    learners, concepts = cfg["learners"], cfg["concepts"]
    recs, reviews = Recorder(), Recorder()
    versions: list[tuple[float, float, int | None]] = []  # (sent, done, version) of recommendations
    connections: list[Connection] = []
    state = {"measuring": False, "stop": False}

    def learner() -> str:
        return rng.choice(learners) if rng.random() < 0.9 else f"{cfg['curriculum']}-new{rng.randrange(10**6)}"

    def batch_body() -> bytes:
        return json.dumps({"curriculum": cfg["curriculum"], "learners": [learner() for _ in range(cfg["batch"])]}).encode()

    def rec_body() -> bytes:
        roll = rng.random()
        body = {"curriculum": cfg["curriculum"],
                "learner": rng.choice(learners) if roll < 0.9 else f"{cfg['curriculum']}-new{rng.randrange(10**6)}"}
        if rng.random() < 0.2:
            body["candidates"] = rng.sample(concepts, 5)
        return json.dumps(body).encode()

    def review_body() -> bytes:
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        return json.dumps([
            {"curriculum": cfg["curriculum"], "learner": rng.choice(learners), "concept": rng.choice(concepts),
             "correct": (ok := rng.random() < 0.75), "grade": 3 if ok else 1, "reviewed_at": now,
             "response_time_ms": rng.randrange(500, 8000), "idempotency_key": uuid.uuid4().hex}
            for _ in range(cfg["review_batch"])
        ]).encode()

    async def call(conn: Connection, path: str, body: bytes, expected: int, recorder: Recorder, sent: float):
        try:
            status, payload = await conn.post(path, body)
        except Exception as exc:  # counted, and the connection starts afresh
            conn.close()
            if state["measuring"]:
                recorder.error(f"{type(exc).__name__}: {exc}")
            return None
        done = time.monotonic()
        if status == 503 and path == BATCH and conn.retry_after is not None:
            # the server sheds batches over API_BATCH_CONCURRENCY: a push job waits Retry-After and sends again
            if state["measuring"]:
                recorder.shed += 1
            await asyncio.sleep(conn.retry_after)
            return None
        if not state["measuring"]:
            return None
        if status != expected:
            recorder.error(f"HTTP {status}: {payload[:200]!r}")
            return None
        recorder.latencies.append((done - sent) * 1000)
        return done, payload

    async def closed_loop(conn: Connection, path, make_body, expected, recorder, on_done=None):
        while not state["stop"]:
            sent = time.monotonic()
            result = await call(conn, path, make_body(), expected, recorder, sent)
            if result and on_done:
                on_done(sent, *result)

    async def paced(rate: float, workers: list[Connection], path, make_body, expected, recorder, on_done=None):
        # open loop: send times are fixed in advance; a late send counts its wait in its latency
        queue: asyncio.Queue = asyncio.Queue()

        async def worker(conn):
            while True:
                sent = await queue.get()
                if sent is None:
                    return
                result = await call(conn, path, make_body(), expected, recorder, sent)
                if result and on_done:
                    on_done(sent, *result)

        tasks = [asyncio.create_task(worker(c)) for c in workers]
        next_send = time.monotonic()
        while not state["stop"]:
            queue.put_nowait(next_send)
            next_send += 1.0 / rate
            await asyncio.sleep(max(0.0, next_send - time.monotonic()))
        for _ in tasks:
            queue.put_nowait(None)
        await asyncio.gather(*tasks)

    def on_recommendation(sent: float, done: float, payload: bytes) -> None:
        answer = json.loads(payload)
        policy = answer["results"][0]["policy"] if cfg["batch"] else answer["policy"]
        versions.append((sent, done, policy["version"] if policy else None))

    def connect(n: int) -> list[Connection]:
        made = [Connection(cfg["port"], cfg["token"]) for _ in range(n)]
        connections.extend(made)
        return made

    rec_conns, review_conns = connect(cfg["concurrency"]), connect(cfg["review_concurrency"])
    path, body = (BATCH, batch_body) if cfg["batch"] else (RECOMMEND, rec_body)
    if cfg["rate"] > 0:
        rec_task = paced(cfg["rate"], rec_conns, path, body, 200, recs, on_recommendation)
        tasks = [asyncio.create_task(rec_task)]
    else:
        tasks = [asyncio.create_task(closed_loop(c, path, body, 200, recs, on_recommendation)) for c in rec_conns]
    if cfg["review_rate"] > 0:
        tasks.append(asyncio.create_task(paced(cfg["review_rate"], review_conns, REVIEWS, review_body, 201, reviews)))

    await asyncio.sleep(cfg["warmup"])
    recs.__init__(), reviews.__init__(), versions.clear()
    state["measuring"] = True
    t0 = time.monotonic()
    started.send(t0)
    await asyncio.sleep(cfg["seconds"])
    state["measuring"] = False
    elapsed = time.monotonic() - t0
    state["stop"] = True
    await asyncio.gather(*tasks)
    for conn in connections:
        conn.close()
    results.send({
        "elapsed": elapsed, "t0": t0,
        "recommendations": vars(recs), "reviews": vars(reviews), "versions": versions,
        "reconnects": sum(c.reconnects for c in connections),
    })


def run_load(cfg: dict, started, results) -> None:
    """The load generator process."""
    asyncio.run(_load(cfg, started, results))


# wrk (https://github.com/wg/wrk, Debian's `wrk`) sends the single endpoint's requests with `--wrk`: a C load
# generator on one thread, which leaves the cores to the server where the asyncio generator took a good part of one.
# The same bodies as rec_body: 90% known learners, 10% new ones, 20% with 5 candidates.
WRK_SCRIPT = """
local learners = {%(learners)s}
local concepts = {%(concepts)s}
local curriculum = "%(curriculum)s"
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Token %(token)s"}
math.randomseed(%(seed)d)

request = function()
  local learner
  if math.random() < 0.9 then
    learner = learners[math.random(#learners)]
  else
    learner = curriculum .. "-new" .. math.random(0, 999999)
  end
  local body = '{"curriculum":"' .. curriculum .. '","learner":"' .. learner .. '"'
  if math.random() < 0.2 then
    local picked, names = {}, {}
    while #names < 5 do
      local c = concepts[math.random(#concepts)]
      if not picked[c] then picked[c] = true; names[#names + 1] = '"' .. c .. '"' end
    end
    body = body .. ',"candidates":[' .. table.concat(names, ",") .. ']'
  end
  return wrk.format("POST", "%(path)s", headers, body .. "}")
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_command(cfg: dict, seconds: float, script: Path) -> list[str]:
    """wrk on one thread with ``cfg["concurrency"]`` keep-alive connections for ``seconds`` (whole seconds, at
    least 1: main() refuses others), its requests made by ``script`` (WRK_SCRIPT)."""
    return ["wrk", "-t1", f"-c{cfg['concurrency']}", f"-d{max(1, int(seconds))}s", "--timeout", "5s", "-s",
            str(script), f"http://{HOST}:{cfg['port']}"]


def write_wrk_script(cfg: dict, path: Path) -> Path:
    """WRK_SCRIPT for cfg's curriculum, learners, concepts and token, written to ``path``."""
    def quoted(values):
        return ", ".join(json.dumps(v) for v in values)

    path.write_text(WRK_SCRIPT % {"learners": quoted(cfg["learners"]), "concepts": quoted(cfg["concepts"]),
                                  "curriculum": cfg["curriculum"], "token": cfg["token"], "seed": cfg["seed"],
                                  "path": RECOMMEND})
    return path


def wrk_results(output: str) -> dict:
    """The measured run's figures from wrk's output (the script's WRK_JSON line): requests, seconds, p50/p99/max in
    ms, errors (connect, read, write, timeout and non-2xx answers together). SystemExit when the line is missing."""
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            raw = json.loads(line[len("WRK_JSON "):])
            errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
            return {"requests": raw["requests"], "seconds": raw["duration_us"] / 1e6, "p50": raw["p50_us"] / 1000,
                    "p99": raw["p99_us"] / 1000, "max": raw["max_us"] / 1000, "errors": errors}
    raise SystemExit(f"wrk printed no results:\n{output[-2000:]}")


# --------------------------------------------------------------------------------------------- set-up
def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def policy_window(args) -> int | None:
    """The bench policies' DTConfig.attention_window from ``--attention-window`` (absent or None: the widest exact
    window at DTConfig's default size, as train_crl_policy trains the default policy; 0: full attention)."""
    from training.rl.dt import DTConfig
    from training.rl.model_config import max_attention_window

    window = getattr(args, "attention_window", None)
    if window is None:
        return max_attention_window(context_length=DTConfig.context_length, num_layers=DTConfig.num_layers)
    return window or None


def seed(args, key: str, workdir: Path) -> dict:
    """The bench curriculum, its learners' history, two registered policy versions (v1 active), a token."""
    import torch
    from django.core.management import call_command

    from curriculum.management.commands.create_api_token import issue_token
    from curriculum.reviews.store import record_reviews
    from curriculum.services import ensure_curriculum, promote_policy, register_policy
    from training.rl.checkpoint import export_artifacts
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.encoder import FEATURES_PER_CONCEPT, EncoderConfig

    call_command("migrate", verbosity=0)
    concepts = [f"c{i:02d}" for i in range(args.concepts)]
    curriculum = ensure_curriculum(key=key, name="API load bench", concept_keys=concepts)
    policies = []
    for seed_ in (1, 2):
        # each version with its own fitted encoder, as trained ones have: the stored states must be re-encoded
        # after the promotion
        factors = np.random.default_rng(seed_).lognormal(0.0, 0.5, args.concepts)
        encoder = EncoderConfig(estimator="halflife", num_concepts=args.concepts, concept_stability=tuple(factors))
        torch.manual_seed(seed_)
        model = DecisionTransformer(DTConfig(state_dim=encoder.state_dim, action_dim=args.concepts,
                                             concept_features=FEATURES_PER_CONCEPT,
                                             attention_window=policy_window(args))).eval()
        folder = workdir / f"policy-{seed_}"
        export_artifacts(model=model, output_dir=folder, concept_keys=concepts, encoder=encoder.to_dict(), target_return=1.0)
        config = json.loads((folder / "dt_lite_config.json").read_text())
        metrics = {"metric": "mean_final_recall", "results": {"dt": {"mean": 0.5, "ci95": [0.49, 0.51]}}}
        policies.append(register_policy(curriculum=curriculum, artifact_dir=folder, config=config, metrics=metrics))
    promote_policy(policy=policies[0], force=True, reason="api_load bench: v1 (untrained weights, no evaluation)")

    rng = random.Random(0)
    learners = [f"{key}-u{i}" for i in range(args.learners)]
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    items = [
        {"curriculum": key, "learner": learner, "concept": rng.choice(concepts), "correct": rng.random() < 0.75,
         "reviewed_at": (start + dt.timedelta(hours=6 * i, minutes=rng.randrange(300))).isoformat()}
        for learner in learners for i in range(args.history)
    ]
    for i in range(0, len(items), 1000):
        record_reviews(items=items[i:i + 1000], batch=f"bench:{key}")
    token, _, _ = issue_token(username=f"bench-{key}")
    return {"curriculum": curriculum, "policies": policies, "learners": learners, "concepts": concepts, "token": token.key}


def cleanup(key: str) -> None:
    from django.contrib.auth import get_user_model

    from curriculum.models import Curriculum, Learner, PolicyModel, PromotionEvent, RecommendationLog
    from curriculum.services import artifact_storage

    curriculum = Curriculum.objects.filter(key=key).first()
    if curriculum is not None:
        PromotionEvent.objects.filter(curriculum=curriculum).delete()
        RecommendationLog.objects.filter(curriculum=curriculum).delete()  # it protects the versions it names
        for policy in PolicyModel.objects.filter(curriculum=curriculum):
            for entry in policy.artifacts.values():
                artifact_storage().delete(entry["path"])
            policy.delete()
        curriculum.delete()  # concepts, reviews and learner states go with it
    Learner.objects.filter(external_id__startswith=f"{key}-").delete()
    get_user_model().objects.filter(username=f"bench-{key}").delete()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(args, port: int, log_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "gunicorn"), "crlsite.wsgi", "-w", str(args.workers),
               "--threads", str(args.threads), "-b", f"{HOST}:{port}", "--log-level", "warning"]
    if args.worker_class:
        command += ["--worker-class", args.worker_class]
    env = {**os.environ, "LOG_LEVEL": "WARNING", **(extra_env or {})}
    if args.batch:  # the budget counts learners: 60000/min would cap the run at 1,000 learners/s
        env.setdefault("API_THROTTLE_RATE", "100000000/min")
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(server: subprocess.Popen, port: int, token: str, key: str, log_path: Path, timeout: float = 90) -> None:
    import http.client

    body = json.dumps({"curriculum": key, "learner": "warm-up"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("POST", RECOMMEND, body, {"Authorization": f"Token {token}", "Content-Type": "application/json"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


# ---------------------------------------------------------------------------------------------- report
def row(name: str, rec: dict, elapsed: float) -> str:
    lat = np.asarray(rec["latencies"])
    n = lat.size
    p50, p99, top = (np.percentile(lat, 50), np.percentile(lat, 99), lat.max()) if n else (float("nan"),) * 3
    return f"{name:<34} {n:>9} {n / elapsed:>8.1f} {p50:>8.1f} {p99:>8.1f} {top:>8.1f} {rec['errors']:>7}"


def report(args, out: dict, promoted_at: float | None, db: str, cache: str) -> bool:
    elapsed = out["elapsed"]
    print(f"\nAPI load: {elapsed:.1f} s measured after {args.warmup:.0f} s warm-up; gunicorn -w {args.workers} "
          f"--threads {args.threads} on {HOST}; database {db}; cache {cache}; {os.cpu_count()} CPUs")
    if args.batch:
        from django.conf import settings

        print(f"batch load shedding: API_BATCH_CONCURRENCY {settings.API_BATCH_CONCURRENCY}, API_BATCH_QUEUE "
              f"{settings.API_BATCH_QUEUE} (waiting at most API_BATCH_QUEUE_MS {settings.API_BATCH_QUEUE_MS})")
    load = f"{args.concurrency} connections" + (f" at {args.rate:.0f}/s" if args.rate > 0 else ", closed loop")
    print(f"recommendations: {load}; reviews: batches of {args.review_batch} at {args.review_rate:.0f}/s on "
          f"{args.review_concurrency} connections\n")
    print(f"{'endpoint':<34} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    wrk = out.get("wrk")
    if wrk is not None:  # wrk's own figures for the recommendations (its measured run, its own clock)
        print(f"{'POST ' + RECOMMEND + ' (wrk)':<34} {wrk['requests']:>9} {wrk['requests'] / wrk['seconds']:>8.1f} "
              f"{wrk['p50']:>8.1f} {wrk['p99']:>8.1f} {wrk['max']:>8.1f} {wrk['errors']:>7}")
    else:
        print(row(f"POST {BATCH} ({args.batch}/batch)" if args.batch else f"POST {RECOMMEND}", out["recommendations"],
                  elapsed))
    print(row(f"POST /api/v1/reviews ({args.review_batch}/batch)", out["reviews"], elapsed))
    for kind in ("recommendations", "reviews"):
        for sample in out[kind]["samples"]:
            print(f"  {kind} error: {sample}")
    if out["reconnects"]:
        print(f"  keep-alive reconnects (resent, not errors): {out['reconnects']}")
    if out["recommendations"]["shed"]:
        print(f"  batches refused with 503 + Retry-After (API_BATCH_CONCURRENCY; waited out and sent again, not "
              f"errors): {out['recommendations']['shed']}")

    versions = out["versions"]
    if promoted_at is not None and wrk is not None:
        print(f"\npromotion v1 -> v2 committed at {promoted_at - out['t0']:.1f} s (which version answered is not "
              "tracked with --wrk)")
    elif promoted_at is not None:
        at = promoted_at - out["t0"]
        after = [v for sent, _, v in versions if sent > promoted_at]
        first_new = min((done for _, done, v in versions if v == 2), default=None)
        stale = [sent for sent, _, v in versions if sent > promoted_at and v == 1]
        first = "no v2 answer in the run" if first_new is None else f"first v2 answer {first_new - promoted_at:+.3f} s after"
        print(f"\npromotion v1 -> v2 committed at {at:.1f} s: {first}; "
              f"{len(stale)} of {len(after)} requests sent after it answered by v1 (the old version answers while a "
              f"worker loads the new one){f', last at {max(stale) - promoted_at:+.3f} s' if stale else ''}")
    rec = out["recommendations"]
    if wrk is not None:
        rps, p99, errors = wrk["requests"] / wrk["seconds"], wrk["p99"], wrk["errors"] + out["reviews"]["errors"]
    else:
        rps = len(rec["latencies"]) / elapsed
        p99 = float(np.percentile(rec["latencies"], 99)) if rec["latencies"] else float("inf")
        errors = rec["errors"] + out["reviews"]["errors"]
    if args.batch:
        learners_per_s = rps * args.batch
        met = learners_per_s >= 20_000 and errors == 0
        print(f"target (>= 20,000 learners/s in batches, 0 errors): {'met' if met else 'MISSED'} "
              f"({learners_per_s:.0f} learners/s in {rps:.1f} batches/s of {args.batch}, p99 {p99:.1f} ms per batch, "
              f"{errors} errors)")
        return met
    met = rps >= 300 and p99 <= 50 and errors == 0
    print(f"target (>= 300 recommendations/s, p99 <= 50 ms, 0 errors): {'met' if met else 'MISSED'} "
          f"({rps:.0f}/s, p99 {p99:.1f} ms, {errors} errors)")
    issue_23 = rps >= 1000 and p99 <= 20 and errors == 0
    print(f"issue 23's target (>= 1,000 recommendations/s, p99 <= 20 ms, 0 errors): "
          f"{'met' if issue_23 else 'missed'}")
    return met


def measure(args, seeded: dict, key: str, workdir: Path, *, promote: bool, extra_env: dict[str, str] | None = None,
            tag: str = "") -> tuple[dict, float | None, tuple[int, float] | None]:
    """One measured run against a fresh gunicorn (with ``extra_env``): (the load generator's results, the promotion's
    monotonic time or None, (states re-encoded, seconds) or None)."""
    from curriculum.learner_state_rebuild import reencode_states
    from curriculum.services import promote_policy

    log_path = workdir / f"gunicorn{tag}.log"
    port = free_port()
    server = start_server(args, port, log_path, extra_env)
    spawned: list[subprocess.Popen] = []
    try:
        wait_ready(server, port, seeded["token"], key, log_path)
        cfg = {"port": port, "token": seeded["token"], "curriculum": key, "learners": seeded["learners"],
               "concepts": seeded["concepts"], "seconds": args.seconds, "warmup": args.warmup,
               "concurrency": args.concurrency, "rate": args.rate, "review_rate": args.review_rate,
               "review_batch": args.review_batch, "review_concurrency": args.review_concurrency, "seed": 1,
               "batch": args.batch}
        use_wrk = getattr(args, "wrk", False)
        if use_wrk:  # the recommendations from wrk; the reviews (and the clock) from the generator
            # the measured run draws other new learners than the warm-up's (its own seed)
            warm_script = write_wrk_script(cfg, workdir / f"warm-up{tag}.lua")
            script = write_wrk_script({**cfg, "seed": cfg["seed"] + 1}, workdir / f"recommend{tag}.lua")
            wrk_cfg, cfg = cfg, {**cfg, "concurrency": 0}
        ctx = mp.get_context("spawn")
        started_recv, started_send = ctx.Pipe(duplex=False)
        results_recv, results_send = ctx.Pipe(duplex=False)
        generator = ctx.Process(target=run_load, args=(cfg, started_send, results_send), name="api-load-generator")
        generator.start()
        if use_wrk:  # whole seconds (main() checks): it ends before the generator's warm-up, which starts later
            warming = subprocess.Popen(wrk_command(wrk_cfg, args.warmup, warm_script), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.STDOUT)
            spawned.append(warming)
        if not started_recv.poll(args.warmup + 60):
            raise SystemExit("the load generator did not start")
        t0 = started_recv.recv()  # time.monotonic() is one clock for all processes on the machine
        if use_wrk:
            warming.wait(60)
            measured = subprocess.Popen(wrk_command(wrk_cfg, args.seconds, script), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
            spawned.append(measured)
        promoted_at, reencoding = None, None
        if promote:
            time.sleep(max(0.0, t0 + args.seconds / 2 - time.monotonic()))
            promote_policy(policy=seeded["policies"][1], force=True, reason="api_load bench: mid-run promotion")
            promoted_at = time.monotonic()
            # what the worker's task does once the promotion commits (no worker runs here); meanwhile a
            # recommendation for a learner not yet re-encoded rebuilds the state from the history
            reencoded = reencode_states(curriculum_id=seeded["curriculum"].pk)
            reencoding = (reencoded, time.monotonic() - promoted_at)
        if not results_recv.poll(args.seconds + 120):
            raise SystemExit("the load generator did not report")
        out = results_recv.recv()
        generator.join(30)
        if use_wrk:
            output, _ = measured.communicate(timeout=args.seconds + 60)
            out["wrk"] = wrk_results(output)
        return out, promoted_at, reencoding
    finally:
        for process in spawned:  # wrk, if a failure left it running
            if process.poll() is None:
                process.kill()
                process.wait()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # gunicorn's workers flush their recommendation log at exit
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def log_ab(args, seeded: dict, key: str, workdir: Path) -> bool:
    """Recommendation throughput with the recommendation log off and on (``RECOMMENDATION_LOG_ENABLED``), in
    alternating runs of ``--seconds`` each (``--log-ab-rounds`` pairs), no promotion; the target: on within 10% of
    off. Prints one row per run, the means and the rows the log stored."""
    from curriculum.models import RecommendationLog

    rates: dict[str, list[float]] = {"off": [], "on": []}
    print(f"\nrecommendation log A/B: {args.log_ab_rounds} round(s) of off then on, {args.seconds:.0f} s each")
    print(f"{'run':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for round_ in range(args.log_ab_rounds):
        for mode in ("off", "on"):
            out, _, _ = measure(args, seeded, key, workdir, promote=False, tag=f"-{mode}-{round_}",
                                extra_env={"RECOMMENDATION_LOG_ENABLED": "1" if mode == "on" else "0"})
            lat = np.asarray(out["recommendations"]["latencies"])
            rps = lat.size / out["elapsed"]
            rates[mode].append(rps)
            print(f"{mode + ' #' + str(round_ + 1):<12} {rps:>8.1f} {np.percentile(lat, 50):>8.1f} "
                  f"{np.percentile(lat, 99):>8.1f} {out['recommendations']['errors']:>7}")
    off, on = float(np.mean(rates["off"])), float(np.mean(rates["on"]))
    stored = RecommendationLog.objects.filter(curriculum__key=key).count()
    met = on >= 0.9 * off
    print(f"mean: off {off:.1f} req/s, on {on:.1f} req/s ({on / off - 1:+.1%}); {stored:,} recommendations logged")
    print(f"target (log on within 10% of off): {'met' if met else 'MISSED'}")
    return met


def lean_ab(args, seeded: dict, key: str, workdir: Path) -> bool:
    """The single endpoint with the lean path off then on (``API_LEAN_PATH``, curriculum/api/lean_path.py), each
    against a fresh server, ``--ab-rounds`` pairs alternating, no promotion, wrk's figures with ``--wrk``: one row per
    run, then the medians and their ratio. True when every run was free of errors."""
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    clean = True
    print(f"\nlean path A/B: {args.ab_rounds} round(s) of off then on, {args.seconds:.0f} s each"
          f"{' (wrk)' if args.wrk else ''}")
    print(f"{'run':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for round_ in range(args.ab_rounds):
        for mode in ("off", "on"):
            out, _, _ = measure(args, seeded, key, workdir, promote=False, tag=f"-lean-{mode}-{round_}",
                                extra_env={"API_LEAN_PATH": "1" if mode == "on" else "0"})
            wrk = out.get("wrk")
            if wrk is not None:
                rps, p50, p99, errors = wrk["requests"] / wrk["seconds"], wrk["p50"], wrk["p99"], wrk["errors"]
            else:
                lat = np.asarray(out["recommendations"]["latencies"])
                rps, p50, p99 = lat.size / out["elapsed"], np.percentile(lat, 50), np.percentile(lat, 99)
                errors = out["recommendations"]["errors"]
            clean = clean and errors == 0
            runs[mode].append((rps, p99))
            print(f"{mode + ' #' + str(round_ + 1):<12} {rps:>8.1f} {p50:>8.1f} {p99:>8.1f} {errors:>7}")
    off, on = (float(np.median([r for r, _ in runs[m]])) for m in ("off", "on"))
    p99_off, p99_on = (float(np.median([p for _, p in runs[m]])) for m in ("off", "on"))
    print(f"median: off {off:.1f} req/s (p99 {p99_off:.1f} ms), on {on:.1f} req/s (p99 {p99_on:.1f} ms): "
          f"{on / off:.2f}x")
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load before it")
    parser.add_argument("--concurrency", type=int, default=4, help="recommendation connections")
    parser.add_argument("--rate", type=float, default=0.0, help="recommendations per second (0: closed loop)")
    parser.add_argument("--batch", type=int, default=0,
                        help="learners per batch request to /recommendations/batch (0: the single endpoint)")
    parser.add_argument("--review-rate", type=float, default=20.0, help="review batches per second (0: none)")
    parser.add_argument("--review-batch", type=int, default=5, help="reviews per batch")
    parser.add_argument("--review-concurrency", type=int, default=2, help="review connections")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="gunicorn worker processes (default: one per CPU, as docs/operations.md advises)")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="",
                        help="gunicorn's --worker-class (default: gunicorn's choice, gthread with --threads over 1, "
                        "else sync, which closes each connection after its answer)")
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--history", type=int, default=30, help="reviews per learner before the run")
    parser.add_argument("--concepts", type=int, default=20)
    parser.add_argument("--attention-window", type=int, default=None,
                        help="the policies' local attention window in tokens (default: the widest exact one, as "
                        "train_crl_policy trains the default policy; 0: full attention); with one, serving's per-step "
                        "path answers learners whose history it has cached")
    parser.add_argument("--no-promotion", action="store_true", help="keep v1 active throughout")
    parser.add_argument("--keep", action="store_true", help="keep the bench curriculum and its data afterwards")
    parser.add_argument("--log-ab", action="store_true",
                        help="measure recommendation throughput with the recommendation log off, then on (no promotion)")
    parser.add_argument("--log-ab-rounds", type=int, default=1, help="--log-ab: pairs of runs (off, on)")
    parser.add_argument("--lean-ab", action="store_true",
                        help="measure the single endpoint with the lean path off, then on (API_LEAN_PATH; no promotion)")
    parser.add_argument("--ab-rounds", type=int, default=3, help="--lean-ab: pairs of runs (off, on)")
    parser.add_argument("--wrk", action="store_true",
                        help="send the single endpoint's recommendations with wrk (one thread, --concurrency "
                        "connections, closed loop), which leaves the cores to the server; the reviews as before")
    args = parser.parse_args()
    if args.lean_ab and (args.batch or args.log_ab):
        parser.error("--lean-ab: the single endpoint (not with --batch or --log-ab)")
    if args.wrk and (args.batch or args.rate > 0 or args.log_ab):
        parser.error("--wrk: the single endpoint's closed loop only (not with --batch, --rate or --log-ab)")
    if args.wrk and not (float(args.seconds).is_integer() and float(args.warmup).is_integer() and args.warmup >= 1):
        parser.error("--wrk: --seconds and --warmup in whole seconds (wrk's -d), --warmup at least 1")
    if args.wrk and shutil.which("wrk") is None:
        parser.error("--wrk: no wrk on PATH (Debian: apt-get install wrk)")

    if not os.environ.get("DATABASE_URL"):
        print("note: DATABASE_URL is not set: running on the SQLite default; the target is for PostgreSQL")
    setup_django()
    from django.conf import settings
    from django.db import connection

    key = f"bench-{uuid.uuid4().hex[:8]}"
    db = f"{connection.vendor} ({settings.DATABASES['default']['NAME']})"
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        workdir = Path(tmp)
        try:
            t = time.perf_counter()
            seeded = seed(args, key, workdir)
            print(f"seeded {key}: {len(seeded['learners'])} learners x {args.history} reviews, "
                  f"{args.concepts} concepts, policy v1 active ({time.perf_counter() - t:.1f} s)")
            if args.log_ab:
                met = log_ab(args, seeded, key, workdir)
            elif args.lean_ab:
                met = lean_ab(args, seeded, key, workdir)
            else:
                out, promoted_at, reencoding = measure(args, seeded, key, workdir, promote=not args.no_promotion)
                met = report(args, out, promoted_at, db, cache)
                if reencoding is not None:
                    print(f"\nAfter the promotion, {reencoding[0]:,} stored learner states were re-encoded for v2 in "
                          f"{reencoding[1]:.1f} s (as the worker's task does), during the load.")
        finally:
            if not args.keep:
                cleanup(key)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
