"""Settings from the environment: SECRET_KEY (required in production, made once into var/ otherwise), the
production configuration docs/operations.md documents passing `manage.py check --deploy`, WhiteNoise's static files."""
from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crlsite.secret_key import load_or_create_secret_key

ROOT = Path(__file__).resolve().parents[2]
PRINT_KEY = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the settings under test, with its own var/ folder."""
    drop = {"SECRET_KEY", "CRL_ENV", "DEBUG", "DATABASE_URL", "ALLOWED_HOSTS"} | {
        k for k in os.environ if k.startswith(("SECURE_", "SESSION_COOKIE", "CSRF_COOKIE"))}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(CRL_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="crlsite.settings", **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _run(["manage.py", "check"], _env(tmp_path, CRL_ENV="production"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is required when CRL_ENV=production" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_without_production_every_process_shares_one_key_made_once_into_var(tmp_path):
    env = _env(tmp_path)
    # Started together, as `make run` starts the web server and the worker.
    processes = [subprocess.Popen([sys.executable, "-c", PRINT_KEY], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    keys = {p.communicate(timeout=120)[0].strip() for p in processes}
    key_file = tmp_path / "var" / "secret_key"
    assert keys == {key_file.read_text().strip()} and len(keys.pop()) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _run(["-c", PRINT_KEY], env).stdout.strip() == key_file.read_text().strip()  # a restart keeps it


def test_secret_key_from_the_environment_wins_and_writes_nothing(tmp_path):
    key = secrets.token_urlsafe(50)
    assert _run(["-c", PRINT_KEY], _env(tmp_path, SECRET_KEY=key)).stdout.strip() == key
    assert not (tmp_path / "var" / "secret_key").exists()


def test_racing_threads_get_the_same_key_and_leave_no_temporary_files(tmp_path):
    path = tmp_path / "sub" / "secret_key"
    keys, barrier = [], threading.Barrier(8)

    def load():
        barrier.wait()
        keys.append(load_or_create_secret_key(path=path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys) == 8
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]


def test_an_empty_key_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ValueError, match=r"secret_key: the secret key file is empty"):
        load_or_create_secret_key(path=tmp_path / "secret_key")


def test_the_documented_production_configuration_passes_check_deploy(tmp_path):
    # The production environment of docs/operations.md (section Production).
    env = _env(tmp_path, CRL_ENV="production", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="ops.example.org",
               CSRF_TRUSTED_ORIGINS="https://ops.example.org")
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_https_settings_fails_check_deploy(tmp_path):
    # The check can fail: turning the secure defaults off is reported.
    env = _env(tmp_path, CRL_ENV="production", SECRET_KEY=secrets.token_urlsafe(50), SECURE_SSL_REDIRECT="0",
               SESSION_COOKIE_SECURE="0")
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W012" in result.stderr


def test_a_gpu_is_expected_of_training_workers_in_production_only_unless_the_environment_says(tmp_path):
    # Off for the CPU-only quick start (no no-GPU warning on every run), on in production (its gpu queue's worker
    # runs on a GPU machine), CRL_TRAINING_GPU_EXPECTED either way; a malformed value is refused, named.
    show = "import django; django.setup(); from django.conf import settings; print(settings.CRL_TRAINING_GPU_EXPECTED)"
    key = secrets.token_urlsafe(50)

    def expected(**extra: str) -> str:
        env = {k: v for k, v in _env(tmp_path, **extra).items() if k != "CRL_TRAINING_GPU_EXPECTED" or k in extra}
        result = _run(["-c", show], env)
        return result.stdout.strip() or result.stderr.strip().splitlines()[-1]

    assert expected() == "False"
    assert expected(CRL_ENV="production", SECRET_KEY=key) == "True"
    assert expected(CRL_ENV="production", SECRET_KEY=key, CRL_TRAINING_GPU_EXPECTED="0") == "False"
    assert expected(CRL_TRAINING_GPU_EXPECTED="yes") == "True"
    assert "CRL_TRAINING_GPU_EXPECTED: expected 1/true/yes/on" in expected(CRL_TRAINING_GPU_EXPECTED="maybe")


@pytest.mark.django_db
def test_collected_static_files_are_served_by_whitenoise(settings, tmp_path, client):
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    call_command("collectstatic", "--noinput", "--verbosity", "0")

    html = client.get("/admin/login/").content.decode()

    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert any("admin/css/base." in href for href in stylesheets), stylesheets
    for href in stylesheets:
        response = client.get(href)
        assert response.status_code == 200, href
        assert response["Content-Type"].startswith("text/css")
        assert "max-age=315360000" in response["Cache-Control"]  # hashed names are cached for good
    docs = client.get("/api/docs/").content.decode()
    bundle = re.search(r'<script src="([^"]+swagger-ui-bundle[^"]*\.js)"', docs).group(1)
    assert client.get(bundle).status_code == 200
