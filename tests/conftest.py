"""Shared fixtures: a test database per run, artifact storage in a temporary folder, curricula with concepts,
stored policy versions, a real Celery worker."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """Each test run, and each of its xdist workers, gets a test database of its own, removed at the end.

    SQLite: a file in the run's (the worker's) pytest temporary folder; a file, not ":memory:", since
    shared-cache memory databases fail concurrent writers at once instead of waiting, and tests run real
    concurrent writers (threads, a Celery worker process). PostgreSQL: ``test_<name>_<run>_<worker>``, so two
    runs against one server do not drop each other's database (``.ci/run`` drops ones a killed run left).
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    test = db.setdefault("TEST", {})
    if db["ENGINE"] == "django.db.backends.sqlite3":
        test["NAME"] = str(tmp_path_factory.getbasetemp() / "test-db.sqlite3")
    else:
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)[:8]
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        test["NAME"] = f"test_{db['NAME']}_{run}_{worker}"


@pytest.fixture(scope="session", autouse=True)
def _static_root(request, tmp_path_factory):
    """An empty STATIC_ROOT for the whole run (live_server's handler is made once): WhiteNoise warns about a
    missing one, and the tests find static files in the apps."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from django.conf import settings

    static_root = tmp_path_factory.getbasetemp() / "static"
    static_root.mkdir(exist_ok=True)
    settings.STATIC_ROOT = static_root


@pytest.fixture(autouse=True)
def _artifact_storage(request, tmp_path_factory):
    """Every test that touches Django gets its own artifact storage folder, and static files found in the
    apps (the manifest storage used elsewhere needs `collectstatic` first)."""
    if not request.config.pluginmanager.hasplugin("django"):  # the rl core's tests run without Django
        yield None
        return
    settings = request.getfixturevalue("settings")
    root = tmp_path_factory.mktemp("artifacts")
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "curriculum.storage.WholeFileSystemStorage", "OPTIONS": {"location": str(root)}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The serving caches are per process and keyed by database ids, which a rolled-back test hands out again
    # (SQLite reuses them): every test starts and ends with none.
    from curriculum.serving import clear_caches

    clear_caches()
    yield root
    clear_caches()


@pytest.fixture(autouse=True)
def _synchronous_recommendation_log(request):
    """Every test that touches Django stores recommendation log rows at once, in its own thread and transaction:
    the background writer's thread would not see a test's uncommitted rows (curriculum/experiments/
    recommendation_log.py; its own tests make a background writer explicitly)."""
    if not request.config.pluginmanager.hasplugin("django"):
        yield None
        return
    from curriculum.experiments.recommendation_log import SynchronousRecommendationLogWriter, set_writer

    writer = SynchronousRecommendationLogWriter()
    previous = set_writer(writer)
    yield writer
    set_writer(previous)


@pytest.fixture
def make_curriculum(db):
    from curriculum.services import ensure_curriculum

    def make(key: str = "demo", concepts: int = 5):
        return ensure_curriculum(key=key, name=key.title(), concept_keys=[f"c{i}" for i in range(concepts)])

    return make


@pytest.fixture
def fake_artifact_dir(tmp_path):
    """A folder with the three artifact files (content irrelevant to the registry's integrity checks)."""

    def make(tag: str = "a") -> Path:
        folder = tmp_path / f"artifacts-{tag}"
        folder.mkdir()
        (folder / "dt_model.pt").write_bytes(b"checkpoint " + tag.encode())
        (folder / "dt_lite_weights.npz").write_bytes(b"weights " + tag.encode())
        (folder / "dt_lite_config.json").write_text(json.dumps({"tag": tag}))
        return folder

    return make


def _evaluation_metrics(*, recall: float, random: float = 0.3, protocol: dict | None = None) -> dict:
    """An evaluate_policy-shaped evaluation (dt and random, +-0.01 intervals) under ``protocol`` (default: the
    default protocol)."""
    from curriculum.evaluation_protocol import EvaluationProtocol

    protocol = protocol if protocol is not None else EvaluationProtocol().to_dict()
    return {"metric": "mean_final_recall", "students": protocol["students"], "seed": protocol["seed"],
            "protocol": protocol, "results": {"dt": {"mean": recall, "ci95": [recall - 0.01, recall + 0.01]},
                                              "random": {"mean": random, "ci95": [random - 0.01, random + 0.01]}}}


@pytest.fixture
def evaluation_metrics():
    """evaluation_metrics(recall=, random=0.3, protocol=None) -> metrics as a training run stores them."""
    return _evaluation_metrics


@pytest.fixture
def make_policy(fake_artifact_dir):
    from curriculum.services import register_policy

    def make(curriculum, *, recall: float | None = 0.5, tag: str | None = None, random: float = 0.3,
             protocol: dict | None = None, before_protocols: bool = False, fallback: float | None = 0.2):
        # evaluated under the curriculum's protocol (or the one given), with a random baseline for the gate.
        # before_protocols: a version registered before curricula stored a protocol (registering a first version
        # now stores its protocol as the curriculum's): the curriculum's stays empty, i.e. the defaults.
        # fallback: the fallback rule's mean under the curriculum's protocol, stored as a worker would
        # (store_fallback); None: not evaluated.
        metrics = {} if recall is None else _evaluation_metrics(
            recall=recall, random=random, protocol=protocol if protocol is not None else curriculum.protocol.to_dict()
        )
        n = curriculum.policies.count() + 1
        stored = curriculum.evaluation_protocol
        policy = register_policy(
            curriculum=curriculum, artifact_dir=fake_artifact_dir(tag or f"{curriculum.key}-{n}"), config={"v": n}, metrics=metrics
        )
        if before_protocols:
            type(curriculum).objects.filter(pk=curriculum.pk).update(evaluation_protocol=stored)
            curriculum.refresh_from_db()
            policy.curriculum.refresh_from_db()
        if fallback is not None:
            _store_fallback(curriculum, mean=fallback)
            policy.curriculum.refresh_from_db()
        return policy

    return make


def _store_fallback(curriculum, *, mean: float, num_concepts: int | None = None) -> None:
    """Store the fallback rule's evaluation under the curriculum's protocol (+-0.01), in the shape
    training.protocol_evaluation.evaluate_fallback_under_protocol stores."""
    from curriculum.evaluation_protocol import FALLBACK_POLICY, fallback_key
    from curriculum.state_specs import StateSpec

    curriculum.refresh_from_db()
    protocol = curriculum.protocol
    n = num_concepts if num_concepts is not None else curriculum.concepts.count()
    evaluation = {"metric": "mean_final_recall", "students": protocol.students, "seed": protocol.seed,
                  "num_concepts": n, "encoder_identity": StateSpec.default(num_concepts=n).identity,
                  "protocol": protocol.to_dict(),
                  "results": {FALLBACK_POLICY: {"mean": mean, "ci95": [mean - 0.01, mean + 0.01]}}}
    curriculum.fallback_evaluations = {**curriculum.fallback_evaluations, fallback_key(protocol, n): evaluation}
    curriculum.save(update_fields=["fallback_evaluations"])


@pytest.fixture
def store_fallback():
    """store_fallback(curriculum, mean=, num_concepts=None): the fallback's evaluation under the protocol."""
    return _store_fallback


# ------------------------------------------------------------------------- a real Celery worker (integration)
def _database_url_for_other_processes() -> str:
    """DATABASE_URL of the test database (pytest-django's), for a worker subprocess."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        auth = quote(s["USER"] or "", safe="") + (f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else "")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    raise RuntimeError(f"no worker database URL for {connection.vendor}")


@pytest.fixture
def wait_until():
    """Poll ``predicate`` until it returns something truthy (returned), failing with ``what`` after ``timeout`` s."""
    import time

    def wait(predicate, *, timeout: float = 60.0, what: str = "the condition", interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    return wait


def start_service(args: list[str], *, env: dict[str, str], log_path: Path, ready, what: str, wait_until,
                  timeout: float = 90):
    """Start a service subprocess (cwd: the repository; stdout and stderr to ``log_path``) and wait until
    ``ready(process)`` says it serves; a process that exits first fails the test with its log. Returns the Popen;
    stop it with ``stop_service``."""
    import subprocess

    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, cwd=Path(__file__).resolve().parent.parent, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    process.log_path = log_path

    def up():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
        return ready(process)

    try:
        wait_until(up, timeout=timeout, what=what)
    except BaseException:
        stop_service(process)
        raise
    return process


def stop_service(process, *, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def gunicorn_server(tmp_path, wait_until):
    """``start(env, workers=1, threads=1) -> port``: `gunicorn crlsite.wsgi -w WORKERS --threads THREADS` on a free loopback port with ``env`` as
    its whole environment, listening when it returns; every server started is stopped at the end of the test (logs:
    tmp_path/gunicorn-N.log)."""
    import socket
    import sys

    started = []

    def start(env: dict[str, str], workers: int = 1, threads: int = 1) -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started.append(start_service(
            [str(Path(sys.executable).parent / "gunicorn"), "crlsite.wsgi", "-w", str(workers), "--threads", str(threads),
             "-b", f"127.0.0.1:{port}"],
            env=env, log_path=tmp_path / f"gunicorn-{len(started)}.log", ready=lambda _: _listening(port),
            what="gunicorn to listen", wait_until=wait_until, timeout=60,
        ))
        return port

    yield start
    for server in started:
        stop_service(server)


@pytest.fixture
def celery_worker_environment() -> dict[str, str]:
    """Extra environment of the `celery_worker` (a test folder's conftest overrides it: e.g. S3 artifacts)."""
    return {}


@pytest.fixture
def celery_worker_pool() -> str:
    """The `celery_worker`'s pool: "solo" (the task runs in the worker's process); a test module overrides it with
    "prefork" to have a pool process it can kill."""
    return "solo"


@pytest.fixture
def celery_worker(request, transactional_db, settings, tmp_path, wait_until, celery_worker_environment,
                  celery_worker_pool):
    """A real `celery worker` subprocess (queues default and gpu) on the test database and the test broker.

    The broker is the test process's CELERY_BROKER_URL (Redis in CI), else the filesystem transport in fresh
    folders shared with this test process. Artifacts go to a folder both processes use. Yields the Popen;
    the worker's log is in ``worker.log_path``. Only for tests marked ``integration`` (kept out of
    `make test-fast`).
    """
    if request.node.get_closest_marker("integration") is None:
        pytest.fail(f"{request.node.nodeid} starts a Celery worker: mark it @pytest.mark.integration")
    import os
    import sys
    import uuid

    from crlsite.celery import create_filesystem_broker_folders, app

    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_DIR", "ARTIFACT_STORAGE_BACKEND"}}
    env.update(DATABASE_URL=_database_url_for_other_processes(), MEDIA_ROOT=str(tmp_path / "media"), PYTHONUNBUFFERED="1")
    env.update(celery_worker_environment)
    if "ARTIFACT_STORAGE_BACKEND" not in celery_worker_environment:
        settings.STORAGES = {
            **settings.STORAGES,
            "artifacts": {"BACKEND": "curriculum.storage.WholeFileSystemStorage",
                          "OPTIONS": {"location": str(tmp_path / "media" / "artifacts")}},
        }
    saved_options = app.conf.broker_transport_options
    if str(app.conf.broker_url).startswith("filesystem://"):
        broker_dir = tmp_path / "broker"
        options = {"data_folder_in": str(broker_dir / "queue"), "data_folder_out": str(broker_dir / "queue"),
                   "processed_folder": str(broker_dir / "processed"), "control_folder": str(broker_dir / "control"),
                   "store_processed": False}
        app.conf.broker_transport_options = options
        create_filesystem_broker_folders(app)
        _forget_broker_connections(app)  # producers made before now point at other folders
        env["CELERY_BROKER_DIR"] = str(broker_dir)
    worker = None
    try:
        worker = start_service(
            [str(Path(sys.executable).parent / "celery"), "-A", "crlsite", "worker", "-Q", "default,gpu", "-c", "1",
             f"--pool={celery_worker_pool}", "-n", f"test-{uuid.uuid4().hex[:8]}@%h", "--without-mingle", "--without-gossip",
             "--loglevel=INFO"],
            env=env, log_path=tmp_path / "worker.log", what="the celery worker to be ready", wait_until=wait_until,
            ready=lambda process: " ready." in process.log_path.read_text(errors="replace"),
        )
        yield worker
    finally:
        if worker is not None:
            stop_service(worker, timeout=15)
        app.conf.broker_transport_options = saved_options
        _forget_broker_connections(app)


def _forget_broker_connections(app) -> None:
    # Celery caches its connection and producer pools; new ones are made from the current configuration
    # (kombu keys its pools by connection parameters, transport options included).
    app._pool = None
    app.amqp._producer_pool = None


# ------------------------------------------------------------------ failing services: a dead port, a hung server
@pytest.fixture
def dead_port():
    """A loopback port with nothing listening (bound, then closed): connections are refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hung_server():
    """A real TCP server on loopback that accepts every connection and never sends a byte (a hung Redis);
    ``accepted`` counts the connections (bench/loopback.py, shared with bench/faults.py)."""
    from bench.loopback import HungServer

    server = HungServer()
    yield server
    server.close()


@pytest.fixture
def database_proxy(transactional_db):
    """A proxy to the test database's PostgreSQL server that freezes when told (``frozen.set()``: bench/loopback.py,
    shared with bench/faults.py); skipped on SQLite."""
    from django.db import connection

    from bench.loopback import FreezableProxy

    if connection.vendor != "postgresql":
        pytest.skip("a database proxy needs PostgreSQL: set DATABASE_URL=postgres://...")
    proxy = FreezableProxy(connection.settings_dict["HOST"] or "127.0.0.1", int(connection.settings_dict["PORT"] or 5432))
    yield proxy
    proxy.frozen.clear()
    proxy.close()


@pytest.fixture
def other_process_database_url(transactional_db) -> str:
    """DATABASE_URL of the test database for a server or worker subprocess (committed rows only)."""
    return _database_url_for_other_processes()


# ------------------------------------------------------------------------------ an interpreter without torch
_NO_TORCH_PRELUDE = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is not installed here ({name})")
        return None

sys.meta_path.insert(0, NoTorch())
"""


@pytest.fixture
def run_without_torch():
    """Run Python ``code`` (with ``args`` as sys.argv[1:]) in a fresh interpreter where importing torch fails, as on
    a web server without it. Returns the CompletedProcess (text output); ``env`` adds to a minimal environment."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent

    def run(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
        return subprocess.run([sys.executable, "-c", _NO_TORCH_PRELUDE + code, *args], cwd=repo, capture_output=True,
                              text=True, timeout=timeout,
                              env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", **(env or {})})

    return run
