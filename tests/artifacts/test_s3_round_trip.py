"""Artifacts across hosts through an object store: a real celery worker, the test process and a gunicorn web
process, each with its own MEDIA_ROOT, share only the database and an S3 bucket (moto's server on loopback).
No local path crosses processes: a policy trained on the worker is promoted here and served by gunicorn, and a
review-log file uploaded here is imported by the worker."""
from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from curriculum.models import PolicyModel, ReviewLog
from curriculum.services import artifact_storage, promote_policy, verify_policy_artifacts
from training import jobs
from training.models import ReviewImportJob, TrainingRun

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
FIXTURES = Path(__file__).resolve().parents[1] / "curriculum" / "reviews" / "importers" / "fixtures"


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def bucket_keys(env: dict) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_S3_ENDPOINT_URL"], region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=env["AWS_STORAGE_BUCKET_NAME"]).get("Contents", [])]


@pytest.mark.trains
def test_a_policy_trained_on_the_worker_is_promoted_here_and_served_by_another_web_process(
        s3_artifacts, celery_worker, s3_web_process, make_curriculum, tmp_path, wait_until):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    curriculum = make_curriculum("algebra", concepts=5)
    run = jobs.launch_training_run(curriculum=curriculum, num_users=20, interactions=20, concepts=5, epochs=1,
                                   batch_size=16, eval_students=30, no_cuda=True)

    def finished():
        run.refresh_from_db()
        return run.is_finished

    wait_until(finished, timeout=240, what=f"{run} to finish on the worker")
    assert run.status == TrainingRun.Status.SUCCEEDED, f"{run.error}\n{celery_worker.log_path.read_text()[-4000:]}"
    policy = PolicyModel.objects.get(training_run=run)
    keys = bucket_keys(s3_artifacts)
    assert any(k.endswith("dt_lite_weights.npz") for k in keys) and any(k.endswith("dt_lite_config.json") for k in keys)
    verify_policy_artifacts(policy=policy)  # read back from the bucket by this process
    promote_policy(policy=policy, reason="s3 round trip: a tiny model, whatever it scores", force=True)

    token = Token.objects.create(user=get_user_model().objects.create(username="app")).key
    conn = http.client.HTTPConnection("127.0.0.1", s3_web_process, timeout=60)
    conn.request("POST", "/api/v1/recommendations", body=json.dumps({"curriculum": "algebra", "learner": "u-1"}),
                 headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    assert response.status == 200, payload
    assert payload["strategy"] == "policy" and payload["policy"] == {"version": policy.version}
    assert payload["concept"] in {f"c{i}" for i in range(5)}
    # Nothing went through a local folder: every process's MEDIA_ROOT is empty.
    for media in ("web-media", "worker-media", "gunicorn-media"):
        assert files_under(tmp_path / media) == [], media


def test_a_file_uploaded_on_the_web_host_is_imported_by_the_worker_from_the_bucket(
        s3_artifacts, celery_worker, make_curriculum, admin_client, tmp_path, wait_until):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    curriculum = make_curriculum("logs", concepts=1)
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])
    upload = SimpleUploadedFile("fsrs_reviews.csv", (FIXTURES / "fsrs_reviews.csv").read_bytes())

    assert admin_client.post(url, {"file": upload, "learner": "ana", "import": "1"}).status_code == 302
    job = ReviewImportJob.objects.get()
    assert job.upload in bucket_keys(s3_artifacts)

    def finished():
        job.refresh_from_db()
        return job.is_finished

    wait_until(finished, timeout=90, what=f"{job} to finish on the worker")
    assert job.status == "succeeded", f"{job.error}\n{celery_worker.log_path.read_text()[-4000:]}"
    assert job.result["created"] == 8 and ReviewLog.objects.filter(curriculum=curriculum).count() == 8
    assert not artifact_storage().exists(job.upload)  # removed once imported
    assert files_under(tmp_path / "worker-media") == [] and files_under(tmp_path / "web-media") == []
