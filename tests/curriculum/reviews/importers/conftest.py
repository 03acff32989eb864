"""Fixtures of the importer tests: an upload through the curriculum's admin import page, run as its job."""
from __future__ import annotations

import pytest


@pytest.fixture
def import_through_admin(client, make_curriculum, monkeypatch):
    """``import_through_admin(name, data)``: a superuser uploads ``data`` as file ``name`` (learner "ana") on the
    "logs" curriculum's import page; the job runs here. Returns (the job, the import page's URL)."""
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from training import jobs
    from training.jobs import lifecycle
    from training.models import ReviewImportJob

    launched = []
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: launched.append(job.pk) or True)
    curriculum = make_curriculum(key="logs", concepts=1)
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    def upload(name: str, data: bytes):
        response = client.post(url, {"file": SimpleUploadedFile(name, data), "learner": "ana", "import": "1"})
        assert response.status_code == 302 and len(launched) == 1
        jobs.run_review_import(job_id=launched[0], worker="test")
        return ReviewImportJob.objects.get(pk=launched[0]), url

    return upload
