"""The production set-up in a real browser: `collectstatic`, then gunicorn with CRL_ENV=production serves the
admin's stylesheets (WhiteNoise) and the API docs (Swagger UI, Redoc) render under the Content-Security-Policy."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest


pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def production_server(tmp_path, gunicorn_server):
    """gunicorn on a free port, in production mode over plain HTTP (the TLS proxy is what a test lacks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DATABASE_URL", "DEBUG"))}
    env.update(CRL_ENV="production", SECRET_KEY=secrets.token_urlsafe(50), CRL_VAR_DIR=str(tmp_path / "var"),
               STATIC_ROOT=str(tmp_path / "static"), SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="0",
               DJANGO_SETTINGS_MODULE="crlsite.settings")
    collect = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert collect.returncode == 0, collect.stderr
    return f"http://127.0.0.1:{gunicorn_server(env)}"


def test_the_admin_is_styled_and_the_api_docs_render(production_server, browser_page, assert_styled):
    page = browser_page
    page.goto(f"{production_server}/admin/login/")
    assert_styled(page)
    assert page.title() == "Log in | CRL Ops"

    page.goto(f"{production_server}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")  # rendered by Swagger UI's scripts
    assert "CRL Ops API" in page.text_content(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/recommendations']")

    page.goto(f"{production_server}/api/docs/redoc/")
    page.wait_for_selector("redoc h1")  # rendered by Redoc's script, which fetched the schema
    assert "CRL Ops API" in page.text_content("redoc h1")

    assert page.load_problems == []
