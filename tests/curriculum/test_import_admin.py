"""Admin review-log pages: upload (permission, CSRF, temporary file, all or nothing) and the calibration report."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import Client
from django.urls import reverse

from curriculum import admin_views
from curriculum.models import ReviewLog

FIXTURES = Path(__file__).parent / "reviews" / "importers" / "fixtures"


def staff(username: str, *codenames: str):
    user = get_user_model().objects.create_user(username, password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="curriculum", codename__in=codenames))
    return user


def upload(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, (FIXTURES / name).read_bytes(), content_type="text/csv")


@pytest.fixture
def curriculum(make_curriculum):
    return make_curriculum(key="logs", concepts=1)


@pytest.fixture
def importer(client, db):
    client.force_login(staff("importer", "add_reviewlog", "view_reviewlog", "view_curriculum", "change_curriculum"))
    return client


@pytest.mark.django_db
def test_a_user_with_the_permission_uploads_a_file_into_a_temporary_file(importer, curriculum, monkeypatch):
    seen = []

    def spy(**kwargs):
        seen.append(type(kwargs["fileobj"]))
        return real(**kwargs)

    real = admin_views.import_review_file
    monkeypatch.setattr(admin_views, "import_review_file", spy)
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response = importer.post(url, {"file": upload("fsrs_reviews.csv"), "format": "", "learner": "ana"})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:curriculum_curriculum_change", args=[curriculum.pk])
    assert ReviewLog.objects.filter(curriculum=curriculum, learner__external_id="ana", source="imported").count() == 8
    assert seen == [TemporaryUploadedFile]  # streamed to disk even though the file is small
    page = importer.get(response["Location"])
    assert "Imported fsrs_reviews.csv (fsrs): 8 reviews created, 0 duplicates" in page.content.decode()


@pytest.mark.django_db
def test_an_upload_with_a_bad_row_imports_nothing_and_shows_line_and_column(importer, curriculum):
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response = importer.post(url, {"file": upload("fsrs_bad_grade.csv"), "learner": "ana"})

    assert response.status_code == 400
    assert "fsrs_bad_grade.csv, line 4, column review_rating: expected 1-4, got &#x27;7&#x27;" in response.content.decode()
    assert ReviewLog.objects.count() == 0


@pytest.mark.django_db
def test_an_upload_without_a_learner_for_an_anki_file_is_explained(importer, curriculum):
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response = importer.post(url, {"file": upload("anki_revlog.csv")})

    assert response.status_code == 400 and "name the learner" in response.content.decode()


@pytest.mark.django_db
def test_the_upload_form_is_refused_without_the_permission(client, curriculum):
    client.force_login(staff("viewer", "view_curriculum", "view_reviewlog"))
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    assert client.get(url).status_code == 403
    assert client.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana"}).status_code == 403
    assert ReviewLog.objects.count() == 0


@pytest.mark.django_db
def test_the_upload_needs_the_csrf_token(curriculum):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("importer", "add_reviewlog", "view_curriculum"))
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    refused = client.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana"})
    assert refused.status_code == 403 and ReviewLog.objects.count() == 0

    form = client.get(url)
    token = form.context["csrf_token"]
    accepted = client.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302 and ReviewLog.objects.count() == 8


@pytest.mark.django_db
def test_the_curriculum_change_page_links_to_both_pages(importer, curriculum):
    page = importer.get(reverse("admin:curriculum_curriculum_change", args=[curriculum.pk])).content.decode()

    assert reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk]) in page
    assert reverse("admin:curriculum_curriculum_calibration", args=[curriculum.pk]) in page


@pytest.mark.django_db
def test_the_calibration_page_shows_the_model_the_baselines_and_a_plot(importer, curriculum):
    importer.post(reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk]),
                  {"file": upload("fsrs_reviews.csv"), "learner": "ana"})

    response = importer.get(reverse("admin:curriculum_curriculum_calibration", args=[curriculum.pk]))

    assert response.status_code == 200
    body = response.content.decode()
    for name in ("model", "avg", "moving_avg", "fsrs6_default"):
        assert f"<td>{name}</td>" in body
    assert "<svg" in body and "<polyline" in body
    assert response.context["report"]["results"]["including_same_day"]["n"] >= 1


@pytest.mark.django_db
def test_the_calibration_page_is_refused_without_the_permission(client, curriculum):
    client.force_login(staff("nobody"))

    assert client.get(reverse("admin:curriculum_curriculum_calibration", args=[curriculum.pk])).status_code == 403
