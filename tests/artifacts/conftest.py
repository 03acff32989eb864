"""Artifacts across hosts: a real S3-protocol server on loopback (moto's ThreadedMotoServer; no cloud), the
environment that points a process's artifacts storage at it (django-storages' S3 backend), and a celery worker
and a gunicorn web process that use it, each with a MEDIA_ROOT of its own."""
from __future__ import annotations

import os
import socket
import uuid

import pytest



@pytest.fixture
def s3_environment(tmp_path):
    """The environment variables of the artifacts storage on a fresh bucket of a moto server on 127.0.0.1."""
    pytest.importorskip("storages.backends.s3", reason="django-storages[s3] is not installed")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "ARTIFACT_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
        "AWS_STORAGE_BUCKET_NAME": f"crl-artifacts-{uuid.uuid4().hex[:8]}",
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }
    boto3.client("s3", endpoint_url=env["AWS_S3_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="test-key", aws_secret_access_key="test-secret").create_bucket(
        Bucket=env["AWS_STORAGE_BUCKET_NAME"])
    try:
        yield env
    finally:
        server.stop()


def s3_storages(settings_storages: dict, env: dict) -> dict:
    """STORAGES with "artifacts" on the S3 server, as crlsite/settings.py builds it from ``env``."""
    return {**settings_storages, "artifacts": {"BACKEND": env["ARTIFACT_STORAGE_BACKEND"], "OPTIONS": {
        "bucket_name": env["AWS_STORAGE_BUCKET_NAME"], "endpoint_url": env["AWS_S3_ENDPOINT_URL"],
        "region_name": env["AWS_S3_REGION_NAME"], "file_overwrite": False}}}


@pytest.fixture
def s3_artifacts(s3_environment, settings, monkeypatch, tmp_path):
    """This test process (the "web" host) on the S3 artifacts storage, with a MEDIA_ROOT of its own."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, s3_environment[name])
    settings.MEDIA_ROOT = tmp_path / "web-media"
    settings.STORAGES = s3_storages(settings.STORAGES, s3_environment)
    return s3_environment


@pytest.fixture
def celery_worker_environment(s3_environment, tmp_path) -> dict[str, str]:
    """The worker (tests/conftest.py's celery_worker) on the same bucket, with another MEDIA_ROOT."""
    return {**s3_environment, "MEDIA_ROOT": str(tmp_path / "worker-media")}


@pytest.fixture
def s3_web_process(s3_environment, other_process_database_url, tmp_path, gunicorn_server):
    """Port of a `gunicorn crlsite.wsgi` on 127.0.0.1 with the S3 artifacts and a MEDIA_ROOT of its own."""
    env = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "REDIS_URL"}}
    env.update(s3_environment, DATABASE_URL=other_process_database_url, MEDIA_ROOT=str(tmp_path / "gunicorn-media"),
               OMP_NUM_THREADS="1")
    return gunicorn_server(env)
