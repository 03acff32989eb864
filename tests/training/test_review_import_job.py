"""The review import job in this process (no broker): it reads its stored file, a dry run stores nothing, a
cancel while storing leaves none of its reviews, a redelivered task imports once."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from curriculum.models import ReviewLog
from training import jobs, tasks
from training.jobs import lifecycle, review_import
from training.models import Job, ReviewImportJob

pytestmark = pytest.mark.django_db(transaction=True)
FIXTURES = Path(__file__).resolve().parents[1] / "curriculum" / "reviews" / "importers" / "fixtures"


@pytest.fixture(autouse=True)
def _quick_heartbeats_and_no_broker(settings, monkeypatch):
    settings.CRL_JOB_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: True)


def launch(curriculum, name: str = "fsrs_reviews.csv", **fields) -> ReviewImportJob:
    data = (FIXTURES / name).read_bytes()
    upload = jobs.store_upload(fileobj=ContentFile(data), filename=name)
    return jobs.launch_review_import(curriculum=curriculum, upload=upload, filename=name, size=len(data),
                                     learner="ana", **fields)


def test_an_import_job_imports_its_stored_file_once_even_when_redelivered(make_curriculum):
    job = launch(make_curriculum("logs", concepts=1))

    tasks.run_review_import(job.pk)
    tasks.run_review_import(job.pk)  # the broker delivers it again

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 1 and job.result["created"] == 8
    assert ReviewLog.objects.count() == 8 and job.progress_percent == 100.0
    assert jobs.job_status(job=job)["result"]["created"] == 8


def test_a_dry_run_job_counts_and_keeps_its_file(make_curriculum):
    from curriculum.services import artifact_storage

    job = launch(make_curriculum("logs", concepts=1), dry_run=True)
    tasks.run_review_import(job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result["dry_run"] and job.result["rows"] >= 8
    assert not ReviewLog.objects.exists() and artifact_storage().exists(job.upload)
    retried = jobs.retry_job(job=job)
    assert (retried.upload, retried.dry_run) == (job.upload, True)


def test_a_cancel_while_storing_leaves_none_of_the_reviews(make_curriculum, monkeypatch):
    job = launch(make_curriculum("logs", concepts=1))
    real = review_import.import_review_file

    def cancel_once_storing(**kwargs):
        report = kwargs["on_progress"]

        def progress(phase, done, total):
            if phase == "storing":
                ReviewImportJob.objects.filter(pk=job.pk).update(cancel_requested=True)
                time.sleep(0.5)  # the heartbeat reads the flag back
            report(phase, done, total)

        return real(**{**kwargs, "on_progress": progress, "batch_size": 2})

    monkeypatch.setattr(review_import, "import_review_file", cancel_once_storing)
    tasks.run_review_import(job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert not ReviewLog.objects.exists()


def test_a_job_whose_file_is_gone_fails_saying_so(make_curriculum):
    from curriculum.services import artifact_storage

    job = launch(make_curriculum("logs", concepts=1))
    artifact_storage().delete(job.upload)
    tasks.run_review_import(job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "no longer stored" in job.error and "upload it again" in job.error


@pytest.mark.parametrize("name, stored", [
    ("revlog.csv", "review-imports/revlog.csv"),
    ("日本語" * 30 + ".csv", "review-imports/" + "日本語" * 21 + "日本.csv"),  # 195 + 4 bytes: no half character
    ("..", "review-imports/upload"),
])
def test_an_uploads_storage_name_fits_a_file_system_and_keeps_its_extension(name, stored):
    assert review_import.upload_name(name) == stored
    assert len(stored.rsplit("/", 1)[1].encode()) <= review_import.UPLOAD_NAME_MAX_BYTES
