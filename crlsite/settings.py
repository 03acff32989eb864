"""Settings for CRL Ops, read from the environment (12-factor); defaults run on one machine with no servers."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CRL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# No fixed secret anywhere: without SECRET_KEY a random one is made per process (sessions then do not
# survive a restart, which is fine for a demo); production sets SECRET_KEY.
SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
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
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    # A file, not ":memory:": shared-cache memory databases fail concurrent writers at once instead of
    # waiting, and tests run real concurrent writers (threads, a Celery worker process).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
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
if ARTIFACT_STORAGE_BACKEND.endswith("S3Storage"):
    _ARTIFACT_STORAGE_OPTIONS.setdefault("file_overwrite", False)  # never replace a stored artifact silently
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "artifacts": {"BACKEND": ARTIFACT_STORAGE_BACKEND, "OPTIONS": _ARTIFACT_STORAGE_OPTIONS}
    if ARTIFACT_STORAGE_BACKEND
    else {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT / "artifacts")}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
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
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", str(5 * 3600)))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 300
CELERY_TASK_IGNORE_RESULT = True  # the job rows in the database are the truth, not the result backend
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Jobs: a running job writes a heartbeat this often; one silent for CRL_JOB_STALE_SECONDS is marked failed.
CRL_JOB_HEARTBEAT_SECONDS = float(os.environ.get("CRL_JOB_HEARTBEAT_SECONDS", "2"))
CRL_JOB_STALE_SECONDS = float(os.environ.get("CRL_JOB_STALE_SECONDS", "300"))

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
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_HTTPONLY = False  # the orchestrator's forms read it from the template, not JS
    X_FRAME_OPTIONS = "DENY"

# Reviews: a review time (or a recommendation's `at`) more than this many seconds after the server clock is refused.
CRL_REVIEW_FUTURE_TOLERANCE_SECONDS = float(os.environ.get("CRL_REVIEW_FUTURE_TOLERANCE_SECONDS", "300"))

# Periodic tasks, for `celery -A crlsite beat` (one per deployment): the stale-job check and the re-publishing of
# jobs whose message was lost (training.tasks.BEAT_SCHEDULE), and the re-encoding catch-up of learner states
# (curriculum.tasks.BEAT_SCHEDULE). A job still queued after CRL_JOB_REQUEUE_SECONDS is published again (a
# duplicate message is harmless: the claim happens once). Review-log uploads in the admin are refused above
# CRL_IMPORT_MAX_UPLOAD_BYTES (default 1 GiB); larger files go through `manage.py import_reviewlogs`.
CRL_JOB_REQUEUE_SECONDS = float(os.environ.get("CRL_JOB_REQUEUE_SECONDS", "120"))
CRL_IMPORT_MAX_UPLOAD_BYTES = int(os.environ.get("CRL_IMPORT_MAX_UPLOAD_BYTES", str(1 << 30)))

# The entries of training.tasks.BEAT_SCHEDULE and curriculum.tasks.BEAT_SCHEDULE (settings cannot import task
# modules; tests/training/test_requeue.py checks that they agree).
CELERY_BEAT_SCHEDULE = {
    "mark-stale-jobs": {"task": "training.tasks.mark_stale_jobs", "schedule": 60.0},
    "requeue-queued-jobs": {"task": "training.tasks.requeue_queued_jobs", "schedule": 60.0},
    "reencode-lagging-learner-states": {"task": "curriculum.tasks.reencode_lagging_learner_states", "schedule": 300.0},
}
