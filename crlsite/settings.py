"""Settings for CRL Ops, read from the environment (12-factor); defaults run on one machine with no servers."""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from crlsite.secret_key import load_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CRL_VAR_DIR", BASE_DIR / "var"))


# The environment is read with these few helpers (plus dj-database-url) rather than django-environ: every
# variable here is a bool, an int, a list or a URL that dj-database-url already parses, and a second parser
# of DATABASE_URL would only add a way to disagree.
def env_bool(name: str, default: bool = False) -> bool:
    """``name`` as a bool: 1/true/yes/on or 0/false/no/off (any case); unset or empty gives ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected 1/true/yes/on or 0/false/no/off, got {value!r}")


def env_int(name: str, default: int | None) -> int | None:
    """``name`` as a non-negative int; unset or empty gives ``default``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ImproperlyConfigured(f"{name}: expected a whole number >= 0, got {value!r}")
    return int(value)


def env_list(name: str, default: str = "") -> list[str]:
    """``name`` as a comma-separated list (blank items dropped)."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# CRL_ENV=production: secure defaults (HTTPS only, HSTS, secure cookies) and no start without SECRET_KEY.
CRL_ENV = os.environ.get("CRL_ENV", "development").strip().lower() or "development"
if CRL_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"CRL_ENV: expected 'development' or 'production', got {CRL_ENV!r}")
PRODUCTION = CRL_ENV == "production"

DEBUG = env_bool("DEBUG", False)
# No fixed secret anywhere. Production must set SECRET_KEY: a key made per process would differ between web
# workers, and each would reject the others' sessions. Elsewhere one key is made once into var/ and shared
# by every local process (runserver, the Celery worker), so `make run` needs no set-up.
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip()
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when CRL_ENV=production (every web and worker process must share it): "
            "set it to a long random string, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = load_or_create_secret_key(path=VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "crlsite.admin_site.CrlAdminConfig",  # django.contrib.admin, branded CRL Ops
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from here: the docs work without a CDN
    "curriculum",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A view that cannot reach the database or the storage answers 503 + Retry-After, logged once per outage.
    "crlsite.outages.ServiceUnavailableMiddleware",
    # Static files from the process itself (gunicorn or runserver, DEBUG or not): no separate web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "crlsite.urls"
WSGI_APPLICATION = "crlsite.wsgi.application"
ASGI_APPLICATION = "crlsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL (PostgreSQL via psycopg 3 in production), else a SQLite file in the project.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web server read while a worker writes; the timeout rides out short write locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The test database's name is chosen per test run (and per xdist worker) in tests/conftest.py.
# Every query is bounded (PostgreSQL): connecting by DB_CONNECT_TIMEOUT_SECONDS (libpq's connect_timeout, whole
# seconds, at least 2), each statement by DB_STATEMENT_TIMEOUT_SECONDS (the server cancels it; 0: no bound). Celery
# workers, whose bulk statements run longer, take CRL_WORKER_DB_STATEMENT_TIMEOUT_SECONDS instead (crlsite/celery.py).
# A query that fails either way is answered 503 with Retry-After CRL_RETRY_AFTER_SECONDS (crlsite/outages.py).
DB_CONNECT_TIMEOUT_SECONDS = max(env_int("DB_CONNECT_TIMEOUT_SECONDS", 5), 2)
DB_STATEMENT_TIMEOUT_SECONDS = float(os.environ.get("DB_STATEMENT_TIMEOUT_SECONDS", "30"))
CRL_WORKER_DB_STATEMENT_TIMEOUT_SECONDS = float(os.environ.get("CRL_WORKER_DB_STATEMENT_TIMEOUT_SECONDS", "3600"))
CRL_RETRY_AFTER_SECONDS = env_int("CRL_RETRY_AFTER_SECONDS", 5)
# A database that holds the connection and never answers (frozen, or a network that drops everything) cancels no
# statement: a web process cuts a query's connection after DB_QUERY_DEADLINE_SECONDS itself (crlsite/query_deadline.py;
# 0: never). Default: the statement timeout and 5 s more, so that the server cancels first when it can.
DB_QUERY_DEADLINE_SECONDS = float(os.environ.get("DB_QUERY_DEADLINE_SECONDS", str(DB_STATEMENT_TIMEOUT_SECONDS + 5)))

# The recommendation log (curriculum/experiments/recommendation_log.py): every served recommendation is queued in
# memory and stored in batches by a background thread; at most RECOMMENDATION_LOG_MAX_BUFFERED rows wait (more are
# dropped, counted and logged, never blocking a request). RECOMMENDATION_LOG_ENABLED=0 stores none.
RECOMMENDATION_LOG_ENABLED = env_bool("RECOMMENDATION_LOG_ENABLED", True)
RECOMMENDATION_LOG_MAX_BUFFERED = max(env_int("RECOMMENDATION_LOG_MAX_BUFFERED", 50_000), 1)
# Serving's per-step cache (training/rl/kv_cache.py, HistoryStepCache): per web process, the attention keys and values
# of learners' histories for policy versions with local attention, so that a recommendation computes only the newest
# tokens; bytes of arrays kept (about 60 KB a learner at the default model size), least recently used evicted; 0: off.
SERVING_STEP_CACHE_BYTES = max(env_int("SERVING_STEP_CACHE_BYTES", 64 << 20), 0)
# The lean path of POST /api/v1/recommendations (curriculum/api/lean_path.py): the common request answered in front of
# Django's handler and REST framework's view machinery, every other one by them; 0 sends every request through them.
API_LEAN_PATH = env_bool("API_LEAN_PATH", True)
# Batch recommendation requests (POST /api/v1/recommendations/batch) one web process answers at once; more are
# refused with a 503 and Retry-After, so that a push job's batches cannot hold every server thread while the app's
# reviews and single recommendations wait (curriculum/api/concurrency.py). At least 1.
API_BATCH_CONCURRENCY = max(env_int("API_BATCH_CONCURRENCY", 1), 1)
# Batch requests that may wait for a slot of their process (each holding a server thread while it waits), and for
# how long at most (milliseconds), before the 503; 0: none wait (give the process threads for them first).
API_BATCH_QUEUE = max(env_int("API_BATCH_QUEUE", 0), 0)
API_BATCH_QUEUE_MS = max(env_int("API_BATCH_QUEUE_MS", 2000), 0)


def postgres_statement_timeout(seconds: float) -> str:
    """libpq's ``options`` that set the server's statement_timeout (milliseconds; 0 is no timeout)."""
    return f"-c statement_timeout={int(round(seconds * 1000))}"


# The libpq options a Celery worker's connections take (crlsite/celery.py swaps them in when the worker starts).
CRL_WORKER_DB_OPTIONS = postgres_statement_timeout(CRL_WORKER_DB_STATEMENT_TIMEOUT_SECONDS)
if DATABASES["default"]["ENGINE"] in {"django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"}:
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=DB_CONNECT_TIMEOUT_SECONDS, options=postgres_statement_timeout(DB_STATEMENT_TIMEOUT_SECONDS)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

# Artifacts (and uploaded review logs) go through the storage API so web and workers can live on different
# machines: the local folder MEDIA_ROOT/artifacts by default; with ARTIFACT_STORAGE_BACKEND set (e.g.
# django-storages' "storages.backends.s3.S3Storage") its options come from the environment: AWS_STORAGE_BUCKET_NAME,
# AWS_S3_ENDPOINT_URL (an S3-protocol server other than AWS), AWS_S3_REGION_NAME, AWS_LOCATION (a key prefix);
# credentials from boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an instance role, ...).
ARTIFACT_STORAGE_BACKEND = os.environ.get("ARTIFACT_STORAGE_BACKEND", "")
_ARTIFACT_STORAGE_OPTIONS = {
    option: os.environ[variable]
    for option, variable in (("bucket_name", "AWS_STORAGE_BUCKET_NAME"), ("endpoint_url", "AWS_S3_ENDPOINT_URL"),
                             ("region_name", "AWS_S3_REGION_NAME"), ("location", "AWS_LOCATION"))
    if os.environ.get(variable)
}
# A local artifact file is written whole or not at all, and a write that would leave less than
# CRL_STORAGE_RESERVE_BYTES free is refused before it starts (curriculum/storage.py).
CRL_STORAGE_RESERVE_BYTES = env_int("CRL_STORAGE_RESERVE_BYTES", 16 << 20)
if ARTIFACT_STORAGE_BACKEND.endswith("S3Storage"):
    _ARTIFACT_STORAGE_OPTIONS.setdefault("file_overwrite", False)  # never replace a stored artifact silently
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "artifacts": {"BACKEND": ARTIFACT_STORAGE_BACKEND, "OPTIONS": _ARTIFACT_STORAGE_OPTIONS}
    if ARTIFACT_STORAGE_BACKEND
    else {"BACKEND": "curriculum.storage.WholeFileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT / "artifacts")}},
    # `manage.py collectstatic` (make run does it) writes hashed, compressed copies that WhiteNoise serves
    # with far-future cache headers; the tests swap in the plain storage (tests/conftest.py).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Cache: Redis when REDIS_URL / CACHE_URL is given (shared throttling across processes), else local memory.
# A cache that is down or hung must not hold a request: the Redis client gives up after CACHE_TIMEOUT_SECONDS
# to connect and as much to answer (OPTIONS go to redis-py's ConnectionPool), and the throttle then counts in
# the process for a while (curriculum/api/throttling.py).
CACHE_URL = os.environ.get("CACHE_URL") or os.environ.get("REDIS_URL")
CACHE_TIMEOUT_SECONDS = float(os.environ.get("CACHE_TIMEOUT_SECONDS", "0.05"))
REDIS_CACHE_OPTIONS = {
    "socket_connect_timeout": CACHE_TIMEOUT_SECONDS,
    "socket_timeout": CACHE_TIMEOUT_SECONDS,
    "retry_on_timeout": False,
}
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": REDIS_CACHE_OPTIONS,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery. Without CELERY_BROKER_URL an embedded filesystem transport is used: it needs no server and
# works across processes, so `celery worker` runs for real next to `runserver`.
BROKER_DIR = Path(os.environ.get("CELERY_BROKER_DIR", VAR_DIR / "broker"))
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longest job (a training run) must finish within the visibility timeout, or Redis redelivers it;
    # tasks are idempotent, so a redelivery is harmless, but it wastes a worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(6 * 3600))),
    }
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.tasks.run_training_run": {"queue": "gpu"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: a worker takes one at a time
CELERY_TASK_ACKS_LATE = True  # a job whose worker died is redelivered (and found stale by its heartbeat)
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# When a pool process dies (killed for memory), its job is failed as soon as Celery reports the task lost
# (training.tasks); Celery first waits this long for a result the process might have sent, which these tasks never
# send (the job rows are the truth): 2 s instead of Celery's 10.
CELERY_WORKER_LOST_WAIT = float(os.environ.get("CELERY_WORKER_LOST_WAIT", "2"))
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", str(5 * 3600)))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 300
CELERY_TASK_IGNORE_RESULT = True  # the job rows in the database are the truth, not the result backend
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Jobs: a running job writes a heartbeat this often; one silent for CRL_JOB_STALE_SECONDS is marked failed.
CRL_JOB_HEARTBEAT_SECONDS = float(os.environ.get("CRL_JOB_HEARTBEAT_SECONDS", "2"))
CRL_JOB_STALE_SECONDS = float(os.environ.get("CRL_JOB_STALE_SECONDS", "60"))
# Every worker checks for stale jobs and re-publishes lost messages this often (training/jobs/watch.py).
CRL_JOB_WATCH_SECONDS = float(os.environ.get("CRL_JOB_WATCH_SECONDS", "10"))
# PyTorch threads per worker process; unset: the cores this worker may use divided by its concurrency
# (crlsite/worker_threads.py). Two processes each using every core made training steps 5-14x slower.
CRL_WORKER_TORCH_THREADS = env_int("CRL_WORKER_TORCH_THREADS", None)
# Whether this worker's training runs are expected to find a GPU: then a run that did not tick "CPU only" on a worker
# without CUDA carries the no-GPU warning (training.hardware.missing_gpu_warning). On by default in production,
# whose gpu queue's worker runs on a GPU machine (docs/operations.md); off elsewhere, so that the CPU-only quick
# start (make run) trains on the CPU as planned without a warning on every run.
CRL_TRAINING_GPU_EXPECTED = env_bool("CRL_TRAINING_GPU_EXPECTED", PRODUCTION)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # UserRateThrottle's rate parsing, counted with two cache integers per token instead of a list of timestamps
    "DEFAULT_THROTTLE_CLASSES": ["curriculum.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": os.environ.get("API_THROTTLE_RATE", "60000/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CRL Ops API",
    "DESCRIPTION": "Next-concept recommendations and review ingestion for learning apps.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # an experiment's status is a choice set of its own; a policy version's keeps its name from before experiments
    "ENUM_NAME_OVERRIDES": {"ExperimentStatusEnum": ["draft", "running", "stopped"],
                            "StatusEnum": "curriculum.models.PolicyModel.Status"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # a request for a Host not in ALLOWED_HOSTS is the client's error: its one line (which Host, what to add) is
    # kept, Django's traceback of it is not (crlsite.logs.WithoutTraceback)
    "filters": {"without_traceback": {"()": "crlsite.logs.WithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.security.DisallowedHost": {"filters": ["without_traceback"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Deployment (`manage.py check --deploy` is clean with CRL_ENV=production and a SECRET_KEY). Each can be
# overridden, e.g. SECURE_SSL_REDIRECT=0 when the proxy in front already redirects to HTTPS.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
# Behind a proxy that terminates TLS: SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (the proxy must
# set that header itself, never pass a client's on), else every request looks like plain HTTP.
_proxy_header = env_list("SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    if len(_proxy_header) != 2:
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER: expected 'HEADER,value' (e.g. HTTP_X_FORWARDED_PROTO,https), got {_proxy_header}"
        )
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_header)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the orchestrator's forms read it from the template, not JS
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp). Scripts only from this site or an inline <script> carrying the
# request's nonce (`nonce="{{ request.csp_nonce }}"`; Swagger UI's start-up script gets it in
# templates/drf_spectacular/swagger_ui.html). Styles allow 'unsafe-inline': the admin's templates, the orchestrator's
# charts and Redoc (which injects <style> at run time) use inline styles, and a style cannot run code.
# Redoc parses the schema in a worker made from a blob: URL.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Reviews: a review time (or a recommendation's `at`) more than this many seconds after the server clock is refused.
CRL_REVIEW_FUTURE_TOLERANCE_SECONDS = float(os.environ.get("CRL_REVIEW_FUTURE_TOLERANCE_SECONDS", "300"))

# Periodic tasks, for `celery -A crlsite beat` (one per deployment): the stale-job check and the re-publishing of
# jobs whose message was lost (training.tasks.BEAT_SCHEDULE), and the re-encoding catch-up of learner states
# (curriculum.tasks.BEAT_SCHEDULE). A job still queued after CRL_JOB_REQUEUE_SECONDS whose queue holds no message
# is published again (training/jobs/publishing.py; a duplicate message is harmless: the claim happens once). Review-log uploads in the admin are refused above
# CRL_IMPORT_MAX_UPLOAD_BYTES (default 1 GiB); larger files go through `manage.py import_reviewlogs`.
CRL_JOB_REQUEUE_SECONDS = float(os.environ.get("CRL_JOB_REQUEUE_SECONDS", "30"))
CRL_IMPORT_MAX_UPLOAD_BYTES = int(os.environ.get("CRL_IMPORT_MAX_UPLOAD_BYTES", str(1 << 30)))

# The entries of training.tasks.BEAT_SCHEDULE and curriculum.tasks.BEAT_SCHEDULE (settings cannot import task
# modules; tests/training/test_requeue.py checks that they agree).
CELERY_BEAT_SCHEDULE = {
    "mark-stale-jobs": {"task": "training.tasks.mark_stale_jobs", "schedule": 60.0},
    "requeue-queued-jobs": {"task": "training.tasks.requeue_queued_jobs", "schedule": 60.0},
    "reencode-lagging-learner-states": {"task": "curriculum.tasks.reencode_lagging_learner_states", "schedule": 300.0},
}
