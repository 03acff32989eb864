"""Admin pages of a curriculum's review log: upload a review-log file (fsrs, anki, hlr) as an import job or a dry
run, export a learner's reviews (FSRS optimizer CSV), and the calibration report.

Hooked into CurriculumAdmin.get_urls; thin: they parse the form, call one service, render the result.
"""
from __future__ import annotations

import datetime as dt
import errno

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.text import slugify
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from . import charts
from .admin_text import format_when
from .calibration import PREDICTORS, calibration_report
from .models import Curriculum, Learner
from .services import artifact_storage
from .storage import StorageFull
from .reviews.export import fsrs_csv_lines
from .reviews.fields import MAX_ID_LENGTH
from .reviews.validation import ReviewValidationError, check_learner_id
from .reviews.importers.service import FORMATS, ImportFileError, check_file_head


class ImportReviewsForm(forms.Form):
    file = forms.FileField(required=False, help_text="A CSV file with a header line.")
    stored = forms.IntegerField(required=False, widget=forms.HiddenInput)  # an earlier import job's stored file
    format = forms.ChoiceField(
        choices=[("", "detect from the header")] + [(name, fmt.describe()) for name, fmt in FORMATS.items()],
        required=False,
    )
    learner = forms.CharField(
        required=False, max_length=MAX_ID_LENGTH,
        help_text="The learner whose reviews the file holds: required for fsrs and anki files (they have no user column).",
    )

    def __init__(self, *args, curriculum: Curriculum, **kwargs):
        super().__init__(*args, **kwargs)
        self.curriculum = curriculum

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        limit = settings.CRL_IMPORT_MAX_UPLOAD_BYTES
        if upload is not None and upload.size > limit:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size / 2**20:,.1f} MiB; uploads are limited to {limit / 2**20:,.1f} MiB "
                f"(setting CRL_IMPORT_MAX_UPLOAD_BYTES). Import larger files with "
                f"'python manage.py import_reviewlogs FILE --curriculum {self.curriculum.key}'."
            )
        return upload

    def clean_stored(self):
        from training.models import ReviewImportJob

        pk = self.cleaned_data.get("stored")
        if pk is None:
            return None
        job = ReviewImportJob.objects.filter(pk=pk, curriculum=self.curriculum).first()
        if job is None or not artifact_storage().exists(job.upload):
            raise forms.ValidationError("that file is no longer stored: choose it again")
        return job

    def clean(self):
        """Refuse here what the file's first bytes already show (check_file_head: encoding, header, format, the
        learner a file without a learner column needs), each error on the field the operator changes, rather than
        storing the file for a job that fails."""
        data = super().clean()
        if self.errors:
            return data
        if data.get("file") is None and data.get("stored") is None:
            self.add_error("file", "choose a file")
            return data
        stored = data.get("stored")
        try:
            if stored is not None:
                with artifact_storage().open(stored.upload, "rb") as fh:
                    self._check_head(fh, stored.filename, data)
            else:
                self._check_head(data["file"], data["file"].name, data)
        except ImportFileError as exc:
            self.add_error(exc.field if exc.field in ("format", "learner") else "file" if stored is None else None,
                           str(exc))
        return data

    @staticmethod
    def _check_head(fileobj, filename: str, data: dict) -> None:
        check_file_head(fileobj=fileobj, filename=filename, format=data.get("format") or None,
                        learner=data.get("learner") or None, learner_option="the learner field")


class _CurriculumPage(View):
    """A page about one curriculum, inside the admin, for users with ``permission``."""

    model_admin: admin.ModelAdmin | None = None
    permission = ""
    template_name = ""
    title = ""

    def dispatch(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(self.permission):
            raise PermissionDenied
        # the admin's own lookup: an id that is not a number (or holds a NUL byte) is a 404, not a 500
        self.curriculum = self.model_admin.get_object(request, object_id)
        if self.curriculum is None:
            raise Http404(f"no curriculum with id {object_id!r}")
        return super().dispatch(request, object_id)

    def render(self, request: HttpRequest, *, status: int = 200, **context) -> TemplateResponse:
        site = self.model_admin.admin_site
        return TemplateResponse(
            request,
            self.template_name,
            {
                **site.each_context(request),
                "opts": self.model_admin.opts,
                "original": self.curriculum,
                "title": f"{self.title}: {self.curriculum.key}",
                **context,
            },
            status=status,
        )


@method_decorator(csrf_exempt, name="dispatch")  # checked below, once the upload handlers are in place
class ImportReviewsView(_CurriculumPage):
    """Upload a file (kept in the default storage) and launch an import job or a dry run on it; the curriculum's
    recent import jobs are listed with their progress, results and errors, and a stored file can be imported (or
    dry-run) again without uploading it again."""

    permission = "curriculum.add_reviewlog"
    template_name = "admin/curriculum/import_reviews.html"
    title = "Import a review log"

    def dispatch(self, request: HttpRequest, object_id: str) -> HttpResponse:
        # Before anything reads the body: the upload streams to a temporary file whatever its size.
        request.upload_handlers = [TemporaryFileUploadHandler(request)]
        try:
            return csrf_protect(super().dispatch)(request, object_id)
        except OSError as exc:  # the server's temporary folder ran out of space receiving the upload
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return self.refuse_upload(request, f"the server has no space left to receive the upload ({exc.strerror}); "
                                               "nothing was stored: try again once space is freed")

    def refuse_upload(self, request: HttpRequest, message: str, form: ImportReviewsForm | None = None) -> HttpResponse:
        """The page again, saying why the upload was not stored (507 Insufficient Storage)."""
        return self.page(request, form=form or ImportReviewsForm(curriculum=self.curriculum), status=507,
                         refusal=message)

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.page(request, form=ImportReviewsForm(curriculum=self.curriculum))

    def post(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from training import jobs

        form = ImportReviewsForm(request.POST, request.FILES, curriculum=self.curriculum)
        if not form.is_valid():
            return self.page(request, form=form, status=400)
        data = form.cleaned_data
        options = dict(format=data["format"], learner=data["learner"], dry_run="dry_run" in request.POST,
                       created_by=request.user)
        if data["stored"] is not None:
            stored = data["stored"]
            job = jobs.launch_review_import(curriculum=self.curriculum, upload=stored.upload, filename=stored.filename,
                                            size=stored.size, **options)
        else:
            try:
                job = jobs.launch_uploaded_import(curriculum=self.curriculum, fileobj=data["file"],
                                                  filename=data["file"].name, **options)
            except StorageFull as exc:
                return self.refuse_upload(request, str(exc), form)
        messages.success(request, f"{job} queued; its progress is shown below.")
        return HttpResponseRedirect(request.path)

    def page(self, request: HttpRequest, *, form: ImportReviewsForm, status: int = 200, refusal: str = "") -> TemplateResponse:
        return self.render(request, status=status, form=form, refusal=refusal, formats=FORMATS.values(),
                           import_jobs=recent_import_jobs(curriculum=self.curriculum),
                           limit_mib=settings.CRL_IMPORT_MAX_UPLOAD_BYTES / 2**20)


def recent_import_jobs(*, curriculum: Curriculum, limit: int = 10) -> list:
    """The curriculum's latest review import jobs (stale ones marked first), each with ``status_url``,
    ``page_url``, ``job_status`` and ``stored`` (its file can be imported again)."""
    from training.jobs import job_status, mark_stale_jobs
    from training.models import ReviewImportJob

    mark_stale_jobs()
    recent = list(ReviewImportJob.objects.filter(curriculum=curriculum).select_related("curriculum")[:limit])
    for job in recent:
        job.status_url = reverse("admin:training_reviewimportjob_status", args=[job.pk])
        job.page_url = reverse("admin:training_reviewimportjob_change", args=[job.pk])
        job.job_status = job_status(job=job)
        job.stored = job.is_finished and artifact_storage().exists(job.upload)
    return recent


class ExportReviewsView(_CurriculumPage):
    """One learner's reviews of the curriculum as an FSRS optimizer CSV (card_id, review_rating, review_time,
    review_duration), streamed; ``?learner=ID``. Import it back with the fsrs format and the same learner."""

    permission = "curriculum.view_reviewlog"

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        learner_id = request.GET.get("learner", "").strip()
        try:  # the rule of every route: an id with a NUL byte or a control character names no learner
            learner = Learner.objects.filter(external_id=check_learner_id(learner_id)).first() if learner_id else None
            problem = f"no learner {learner_id!r}; give a learner id (the learner field)"
        except ReviewValidationError as exc:
            learner, problem = None, f"learner: {exc.errors[0]['message']}"
        if learner is None:
            messages.error(request, f"export: {problem}" if learner_id else "export: give a learner id (the learner field)")
            opts = self.model_admin.opts
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[self.curriculum.pk]))
        response = StreamingHttpResponse(
            fsrs_csv_lines(curriculum=self.curriculum, learner=learner), content_type="text/csv; charset=utf-8"
        )
        name = slugify(f"{self.curriculum.key}-{learner.external_id}") or "reviews"
        response["Content-Disposition"] = f'attachment; filename="{name}-fsrs.csv"'
        return response


class CalibrationView(_CurriculumPage):
    permission = "curriculum.view_reviewlog"
    template_name = "admin/curriculum/calibration.html"
    title = "Calibration of the recall estimate"

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        report = calibration_report(curriculum=self.curriculum)
        sections = [
            {"key": key, "label": label, "n": report["results"][key]["n"],
             "rows": [(name, report["results"][key][name]) for name in PREDICTORS],
             "plot": charts.calibration_chart(
                 reliability={name: report["results"][key][name].get("reliability") or [] for name in PREDICTORS},
                 title="Calibration")}  # short: the legend shares its line (the heading says which reviews)
            for key, label in (("excluding_same_day", "Reviews a day or more after the previous one"),
                               ("including_same_day", "All repeat reviews (same-day included)"))
        ]
        fit = report["results"]["excluding_same_day"]["model"].get("fit")
        test_from = report["split"]["test_from"]
        return self.render(request, report=report, sections=sections, fit=fit,
                           test_from=format_when(dt.datetime.fromisoformat(test_from)) if test_from else "-")
