"""Admin review-log pages: upload (permission, CSRF, temporary file, all or nothing) and the calibration report."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from curriculum.admin_text import format_when
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
    user = staff("importer", "add_reviewlog", "view_reviewlog", "view_curriculum", "change_curriculum")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="training", codename="view_reviewimportjob"))
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def uploads(settings, tmp_path, monkeypatch):
    """Launched jobs recorded instead of sent to a broker (uploads go to the test's artifacts storage)."""
    from training.jobs import lifecycle

    launched = []
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: launched.append(job.pk) or True)
    return launched


def post_and_run(client, url, data, uploads, django_capture_on_commit_callbacks):
    """POST the import form, then run the job it launched in this process, as a worker would."""
    from training import jobs
    from training.models import ReviewImportJob

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)
    job = None
    if uploads:
        jobs.run_review_import(job_id=uploads.pop(), worker="test")
        job = ReviewImportJob.objects.latest("pk")
    return response, job


@pytest.mark.django_db(transaction=True)
def test_an_upload_is_stored_and_imported_by_a_job_with_progress_on_the_curriculum_page(
        importer, curriculum, uploads, django_capture_on_commit_callbacks):
    from curriculum.services import artifact_storage

    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response, job = post_and_run(importer, url, {"file": upload("fsrs_reviews.csv"), "learner": "ana", "import": "1"},
                                 uploads, django_capture_on_commit_callbacks)

    assert response.status_code == 302 and response["Location"] == url
    assert job.status == "succeeded" and not job.dry_run and job.filename == "fsrs_reviews.csv"
    assert job.result["created"] == 8 and job.step == job.steps > 0
    assert ReviewLog.objects.filter(curriculum=curriculum, learner__external_id="ana", source="imported").count() == 8
    assert not artifact_storage().exists(job.upload)  # an import that succeeded needs its file no more
    page = importer.get(reverse("admin:curriculum_curriculum_change", args=[curriculum.pk])).content.decode()
    assert 'id="import-jobs"' in page and "8 reviews created, 0 duplicates" in page
    assert reverse("admin:training_reviewimportjob_status", args=[job.pk]) in page  # polled for live progress


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_stores_nothing_and_its_stored_file_is_then_imported(
        importer, curriculum, uploads, django_capture_on_commit_callbacks):
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    _, dry = post_and_run(importer, url, {"file": upload("fsrs_reviews.csv"), "learner": "ana", "dry_run": "1"},
                          uploads, django_capture_on_commit_callbacks)

    assert dry.status == "succeeded" and dry.dry_run and ReviewLog.objects.count() == 0
    assert dry.result["rows"] >= 8 and dry.result["concepts_created"] == len(dry.result["new_concepts"]) > 0
    page = importer.get(url).content.decode()
    assert "nothing stored" in page and f'name="stored" value="{dry.pk}"' in page

    _, real = post_and_run(importer, url, {"stored": str(dry.pk), "learner": "ana", "import": "1"},
                           uploads, django_capture_on_commit_callbacks)
    assert real.upload == dry.upload and real.status == "succeeded" and ReviewLog.objects.count() == 8


@pytest.mark.django_db(transaction=True)
def test_a_failed_import_keeps_its_file_names_line_and_column_and_is_retried_with_it(
        importer, curriculum, uploads, django_capture_on_commit_callbacks):
    from curriculum.services import artifact_storage

    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    # A bad row the header cannot show (a grade of 7 on line 4): the form lets it through, the job fails on it.
    _, failed = post_and_run(importer, url, {"file": upload("fsrs_bad_grade.csv"), "learner": "ana", "import": "1"},
                             uploads, django_capture_on_commit_callbacks)

    assert failed.status == "failed" and "line 4, column review_rating" in failed.error
    assert ReviewLog.objects.count() == 0 and artifact_storage().exists(failed.upload)
    page = importer.get(url).content.decode()
    assert "line 4, column review_rating" in page and f'name="stored" value="{failed.pk}"' in page
    assert "Import again" in page

    # The stored file goes through the form's checks too: the fsrs format needs its learner.
    refused = importer.post(url, {"stored": str(failed.pk), "import": "1"})
    assert refused.status_code == 400 and "name the learner" in refused.context["form"].errors["learner"][0]
    _, again = post_and_run(importer, url, {"stored": str(failed.pk), "learner": "ana", "format": "fsrs",
                                            "dry_run": "1"}, uploads, django_capture_on_commit_callbacks)
    assert again.status == "failed" and again.upload == failed.upload


@pytest.mark.django_db(transaction=True)
def test_a_bad_row_imports_nothing_and_the_job_names_line_and_column(
        importer, curriculum, uploads, django_capture_on_commit_callbacks):
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    _, job = post_and_run(importer, url, {"file": upload("fsrs_bad_grade.csv"), "learner": "ana", "import": "1"},
                          uploads, django_capture_on_commit_callbacks)

    assert job.status == "failed" and ReviewLog.objects.count() == 0
    assert "fsrs_bad_grade.csv, line 4, column review_rating: expected 1-4, got '7'" in job.error


@pytest.mark.django_db
def test_an_upload_over_the_size_limit_is_refused_naming_the_setting(importer, curriculum, settings, uploads):
    settings.CRL_IMPORT_MAX_UPLOAD_BYTES = 100
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    response = importer.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana"})

    assert response.status_code == 400 and uploads == []
    text = response.content.decode()
    assert "uploads are limited to" in text and "CRL_IMPORT_MAX_UPLOAD_BYTES" in text and "import_reviewlogs" in text


@pytest.mark.django_db
def test_the_export_is_the_fsrs_optimizer_csv_and_imports_back_to_the_same_reviews(client, curriculum):
    import csv
    import datetime as dt
    import io

    from curriculum.models import Learner
    from curriculum.reviews.importers.service import import_review_file
    from curriculum.reviews.store import record_reviews

    base = dt.datetime(2024, 3, 1, 9, 0, 0, 123000, tzinfo=dt.timezone.utc)
    key = curriculum.concepts.first().key
    record_reviews(items=[
        {"curriculum": "logs", "learner": "ana", "concept": key, "correct": g > 1, "grade": g,
         "reviewed_at": (base + dt.timedelta(hours=7 * i, milliseconds=i)).isoformat(), "response_time_ms": 900 + i}
        for i, g in enumerate([1, 3, 4, 2, 3])
    ])
    client.force_login(staff("viewer", "view_reviewlog", "view_curriculum"))

    response = client.get(reverse("admin:curriculum_curriculum_export_reviews", args=[curriculum.pk]), {"learner": "ana"})

    assert response.status_code == 200 and response.streaming and response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert list(rows[0]) == ["card_id", "review_rating", "review_time", "review_duration"]
    assert [r["review_rating"] for r in rows] == ["1", "3", "4", "2", "3"]
    assert rows[0]["review_time"] == str(int(base.timestamp() * 1000))
    def identities(learner):
        return sorted(ReviewLog.objects.filter(learner__external_id=learner).values_list(
            "concept__key", "reviewed_at", "correct", "grade", "response_time_ms"))
    result = import_review_file(fileobj=io.BytesIO(body), filename="export.csv", curriculum_key="logs", learner="bob")
    assert result.created == 5 and identities("bob") == identities("ana")
    again = import_review_file(fileobj=io.BytesIO(body), filename="export.csv", curriculum_key="logs", learner="ana")
    assert again.created == 0 and again.duplicates == 5  # the same reviews as the ones exported
    assert Learner.objects.filter(external_id="ana").count() == 1


@pytest.mark.django_db
def test_the_export_needs_the_view_permission(client, curriculum):
    client.force_login(staff("nobody", "view_curriculum"))
    url = reverse("admin:curriculum_curriculum_export_reviews", args=[curriculum.pk])
    assert client.get(url, {"learner": "ana"}).status_code == 403


@pytest.mark.django_db
def test_the_upload_form_is_refused_without_the_permission(client, curriculum):
    client.force_login(staff("viewer", "view_curriculum", "view_reviewlog"))
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    assert client.get(url).status_code == 403
    assert client.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana"}).status_code == 403
    assert ReviewLog.objects.count() == 0
    from training.models import ReviewImportJob

    assert not ReviewImportJob.objects.exists()


@pytest.mark.django_db
def test_the_upload_needs_the_csrf_token(curriculum):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("importer", "add_reviewlog", "view_curriculum"))
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])

    refused = client.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana"})
    assert refused.status_code == 403 and ReviewLog.objects.count() == 0
    from training.models import ReviewImportJob

    form = client.get(url)
    token = form.context["csrf_token"]
    accepted = client.post(url, {"file": upload("fsrs_reviews.csv"), "learner": "ana", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302 and ReviewImportJob.objects.count() == 1


@pytest.mark.django_db
def test_the_curriculum_change_page_links_to_both_pages(importer, curriculum):
    page = importer.get(reverse("admin:curriculum_curriculum_change", args=[curriculum.pk])).content.decode()

    assert reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk]) in page
    assert reverse("admin:curriculum_curriculum_calibration", args=[curriculum.pk]) in page


@pytest.mark.django_db
def test_the_calibration_page_shows_the_model_the_baselines_and_a_plot(importer, curriculum):
    from curriculum.reviews.importers.service import import_review_file

    import_review_file(path=FIXTURES / "fsrs_reviews.csv", curriculum_key=curriculum.key, learner="ana")

    response = importer.get(reverse("admin:curriculum_curriculum_calibration", args=[curriculum.pk]))

    assert response.status_code == 200
    body = response.content.decode()
    for name in ("model", "avg", "moving_avg", "fsrs6_default"):
        assert f"<td>{name}</td>" in body
    assert body.count("crl-chart line-chart calibration-plot") == 2
    plot = body[body.index("calibration-plot"):]
    for name in ("perfect calibration", "model", "avg", "moving_avg", "fsrs6_default"):
        assert f">{name}<" in plot  # the legend names every predictor and the diagonal
    assert 'data-series="avg"' in plot  # a constant predictor (one bin) is still drawn
    report = response.context["report"]
    assert report["results"]["including_same_day"]["n"] >= 1
    test_from = dt.datetime.fromisoformat(report["split"]["test_from"])
    assert report["split"]["test_from"] not in body and format_when(test_from) in body  # with seconds, local time


@pytest.mark.django_db
def test_the_calibration_page_is_refused_without_the_permission(client, curriculum):
    client.force_login(staff("nobody"))

    assert client.get(reverse("admin:curriculum_curriculum_calibration", args=[curriculum.pk])).status_code == 403


@pytest.mark.django_db
def test_review_import_jobs_add_chooses_the_curriculum_then_opens_its_import_page(admin_client, curriculum,
                                                                                   make_curriculum):
    make_curriculum(key="algebra", concepts=1)
    add = reverse("admin:training_reviewimportjob_add")
    page = admin_client.get(add)
    text = page.content.decode()
    assert page.status_code == 200 and 'id="import-curriculum"' in text
    assert f'<option value="{curriculum.pk}">logs</option>' in text and ">algebra</option>" in text
    assert not list(page.context["messages"])  # no bounce with a message
    chosen = admin_client.get(add, {"curriculum": curriculum.pk})
    assert chosen.status_code == 302
    assert chosen["Location"] == reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])
    wrong = admin_client.get(add, {"curriculum": "999999"})
    assert wrong.status_code == 200 and "errornote" in wrong.content.decode()


@pytest.mark.django_db
def test_review_import_jobs_add_without_a_curriculum_says_to_add_one(admin_client):
    text = admin_client.get(reverse("admin:training_reviewimportjob_add")).content.decode()
    assert 'id="no-curriculum"' in text and reverse("admin:curriculum_curriculum_add") in text


@pytest.mark.django_db
@pytest.mark.parametrize("name, data, field, words", [
    ("anki_revlog.csv", {}, "learner", "holds one learner's reviews and has no learner column: name the learner "
                                       "whose reviews they are (the learner field)"),
    ("hlr_traces.csv", {"learner": "ana"}, "learner", "names its learners in the user_id column: leave the learner empty"),
    ("fsrs_missing_column.csv", {"learner": "ana"}, "file", "missing column"),
    ("fsrs_semicolon.csv", {"learner": "ana"}, "file", "semicolon-separated"),
])
def test_the_import_form_refuses_what_the_header_shows_on_the_field_to_change(importer, curriculum, uploads, name,
                                                                            data, field, words):
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])
    response = importer.post(url, {"file": upload(name), "import": "1", **data})
    assert response.status_code == 400 and uploads == []  # no job, nothing stored
    errors = response.context["form"].errors
    assert list(errors) == [field] and words in errors[field][0] and name in errors[field][0]
    from training.models import ReviewImportJob
    assert not ReviewImportJob.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["日本語の復習ログ" * 11 + ".csv", "a" * 251 + ".csv"])
def test_an_upload_whose_name_is_too_long_for_the_file_system_is_stored_under_a_shorter_one(importer, curriculum,
                                                                                           uploads, name):
    # 92 Japanese characters are 268 bytes, over a file name's 255 (a 500); 255 ASCII ones fitted once, and a second
    # upload's free name (the storage adds "_" and 7 characters) did not
    from curriculum.services import artifact_storage
    from training.models import ReviewImportJob

    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])
    data = (FIXTURES / "fsrs_reviews.csv").read_bytes()
    for _ in range(2):
        response = importer.post(url, {"file": SimpleUploadedFile(name, data), "learner": "ana", "import": "1"})
        assert response.status_code == 302

    jobs = list(ReviewImportJob.objects.order_by("pk"))
    assert [job.filename for job in jobs] == [name, name]
    assert len({job.upload for job in jobs}) == 2
    for job in jobs:
        assert job.upload.startswith("review-imports/") and job.upload.endswith(".csv")
        assert len(job.upload.rsplit("/", 1)[1].encode()) <= 255
        with artifact_storage().open(job.upload, "rb") as fh:
            assert fh.read() == data


@pytest.mark.django_db
def test_the_import_form_refuses_latin_1_text_in_the_first_bytes_naming_its_line(importer, curriculum, uploads):
    url = reverse("admin:curriculum_curriculum_import_reviews", args=[curriculum.pk])
    data = b"card_id,review_rating,review_time,review_duration\n1,3,1700000000000,10\ncaf\xe9,3,1700000001000,10\n"

    response = importer.post(url, {"file": SimpleUploadedFile("latin1.csv", data), "learner": "ana", "import": "1"})

    assert response.status_code == 400 and uploads == []
    errors = response.context["form"].errors
    assert list(errors) == ["file"] and errors["file"][0].startswith("latin1.csv, line 3: not UTF-8 text (byte 0xE9)")
