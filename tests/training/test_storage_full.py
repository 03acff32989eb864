"""Jobs on a full artifact storage: the job is failed with the operator's message, what it stored is removed, the
next run succeeds under its own names; a training run that clearly cannot store its artifacts is refused before it
trains; an admin upload that does not fit is a page saying so (507), not a 500 and a 0-byte file."""
from __future__ import annotations

import errno

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.urls import reverse

from curriculum import storage as artifact_files
from curriculum.services import artifact_storage
from training import jobs, services
from training.jobs import lifecycle
from training.models import ReviewImportJob, TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: True)  # these tests run the jobs themselves


def stored_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_extraction_whose_storage_fills_keeps_nothing_says_so_and_the_next_one_succeeds(
        curriculum, monkeypatch, _artifact_storage):
    generation = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=6, interactions=8, seed=3)
    jobs.run_synthetic_generation(job_id=generation.pk)
    storage = artifact_storage()
    real_save = type(storage)._save

    def full_at_the_statistics(self, name, content):
        if name.endswith("statistics.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, name, content)

    monkeypatch.setattr(type(storage), "_save", full_at_the_statistics)
    failed = jobs.launch_trajectory_extraction(curriculum=curriculum)
    jobs.run_trajectory_extraction(job_id=failed.pk)
    failed.refresh_from_db()

    assert failed.status == "failed" and failed.error == "OSError: No space left on device (the traceback is in the " \
                                                         "worker's log)"
    assert failed.version is None and stored_files(_artifact_storage) == []  # the dataset.npz stored first is gone

    monkeypatch.setattr(type(storage), "_save", real_save)
    again = jobs.launch_trajectory_extraction(curriculum=curriculum)
    jobs.run_trajectory_extraction(job_id=again.pk)
    again.refresh_from_db()
    assert (again.status, again.version, again.dataset_path) == ("succeeded", 1, "datasets/algebra/v1/dataset.npz")
    assert stored_files(_artifact_storage) == ["datasets/algebra/v1/dataset.npz", "datasets/algebra/v1/statistics.json"]


def test_a_training_run_that_clearly_cannot_store_its_artifacts_fails_before_training_saying_why(
        curriculum, make_policy, monkeypatch, settings):
    make_policy(curriculum)  # the curriculum's last version: the size the run's artifacts are expected to take
    settings.CRL_STORAGE_RESERVE_BYTES = 1 << 20
    monkeypatch.setattr(artifact_files, "_disk_free", lambda path: 512 << 10)
    trained = []
    monkeypatch.setattr(services, "train_and_register", lambda **kwargs: trained.append(kwargs))
    run = jobs.launch_training_run(curriculum=curriculum, num_users=20, interactions=20, epochs=1, no_cuda=True)

    jobs.run_training_run(job_id=run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and not trained
    assert run.error.startswith(f"not enough space in the artifact storage ({artifact_storage().location}) for the "
                                "run's artifacts (about 0.0 MiB, as algebra v1's): 0.5 MiB free")
    assert "free some space there" in run.error and "Traceback" not in run.error


@pytest.fixture
def importer(client):
    client.force_login(get_user_model().objects.create_superuser("importer", password="x"))
    return client


def upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("reviews.csv", b"card_id,review_time,review_rating,review_duration\n"
                                             b"1,1700000000000,3,10\n", content_type="text/csv")


def test_an_upload_the_storage_has_no_room_for_is_a_page_saying_so_and_stores_nothing(
        importer, curriculum, monkeypatch, _artifact_storage):
    monkeypatch.setattr(artifact_files, "_disk_free", lambda path: 0)
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response = importer.post(url, {"file": upload(), "learner": "ana", "import": "1"})

    assert response.status_code == 507
    assert "not enough space in the artifact storage" in response.content.decode() and "reviews.csv" in response.content.decode()
    assert stored_files(_artifact_storage) == [] and not ReviewImportJob.objects.exists()


def test_an_upload_the_servers_temporary_folder_has_no_room_for_is_a_page_saying_so(importer, curriculum, monkeypatch):
    def disk_full(self, raw_data, start):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", disk_full)
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response = importer.post(url, {"file": upload(), "learner": "ana", "import": "1"})

    assert response.status_code == 507
    assert "the server has no space left to receive the upload" in response.content.decode()
    assert not ReviewImportJob.objects.exists()


def test_an_upload_whose_import_cannot_be_launched_leaves_no_file(curriculum, monkeypatch, _artifact_storage):
    from django.core.exceptions import ValidationError

    def refuse(*, job):
        raise ValidationError({"learner": "refused"})

    monkeypatch.setattr(lifecycle, "launch_job", refuse)
    monkeypatch.setattr("training.jobs.review_import.launch_job", refuse)
    with pytest.raises(ValidationError):
        jobs.launch_uploaded_import(curriculum=curriculum, fileobj=upload(), filename="reviews.csv", learner="ana")
    assert stored_files(_artifact_storage) == []
