"""Admin pages of a curriculum's review log: upload a review-log file (fsrs, anki, hlr), and the calibration report.

Hooked into CurriculumAdmin.get_urls; thin: they parse the form, call one service, render the result.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .calibration import PREDICTORS, calibration_report
from .reviews.importers.service import FORMATS, ImportFileError, import_review_file
from .models import Curriculum


class ImportReviewsForm(forms.Form):
    file = forms.FileField(help_text="A CSV file with a header line.")
    format = forms.ChoiceField(
        choices=[("", "detect from the header")] + [(name, fmt.describe()) for name, fmt in FORMATS.items()],
        required=False,
    )
    learner = forms.CharField(
        required=False, max_length=200,
        help_text="The learner whose reviews the file holds: required for fsrs and anki files (they have no user column).",
    )


class _CurriculumPage(View):
    """A page about one curriculum, inside the admin, for users with ``permission``."""

    model_admin: admin.ModelAdmin | None = None
    permission = ""
    template_name = ""
    title = ""

    def dispatch(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(self.permission):
            raise PermissionDenied
        self.curriculum = get_object_or_404(Curriculum, pk=object_id)
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
    permission = "curriculum.add_reviewlog"
    template_name = "admin/curriculum/import_reviews.html"
    title = "Import a review log"

    def dispatch(self, request: HttpRequest, object_id: str) -> HttpResponse:
        # Before anything reads the body: the upload streams to a temporary file whatever its size.
        request.upload_handlers = [TemporaryFileUploadHandler(request)]
        return csrf_protect(super().dispatch)(request, object_id)

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.render(request, form=ImportReviewsForm(), formats=FORMATS.values())

    def post(self, request: HttpRequest, object_id: str) -> HttpResponse:
        form = ImportReviewsForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = import_review_file(
                    fileobj=upload, filename=upload.name, curriculum_key=self.curriculum.key,
                    format=form.cleaned_data["format"] or None, learner=form.cleaned_data["learner"] or None,
                )
            except ImportFileError as exc:
                form.add_error(None, f"{exc} (nothing was imported)")
            else:
                messages.success(
                    request,
                    f"Imported {upload.name} ({result.format}): {result.created} reviews created, {result.duplicates} duplicates, "
                    f"{result.skipped} skipped of {result.rows} rows; {result.learners} learners, "
                    f"{result.concepts_created} new concepts (batch {result.batch}).",
                )
                opts = self.model_admin.opts
                return HttpResponseRedirect(
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[self.curriculum.pk])
                )
        return self.render(request, status=400, form=form, formats=FORMATS.values())


class CalibrationView(_CurriculumPage):
    permission = "curriculum.view_reviewlog"
    template_name = "admin/curriculum/calibration.html"
    title = "Calibration of the recall estimate"

    def get(self, request: HttpRequest, object_id: str) -> HttpResponse:
        report = calibration_report(curriculum=self.curriculum)
        sections = [
            {"key": key, "label": label, "n": report["results"][key]["n"],
             "rows": [(name, report["results"][key][name]) for name in PREDICTORS],
             "plot": reliability_plot(report["results"][key])}
            for key, label in (("excluding_same_day", "Reviews a day or more after the previous one"),
                               ("including_same_day", "All repeat reviews (same-day included)"))
        ]
        fit = report["results"]["excluding_same_day"]["model"].get("fit")
        return self.render(request, report=report, sections=sections, fit=fit)


PLOT_COLOURS = {"model": "#1f77b4", "avg": "#7f7f7f", "moving_avg": "#2ca02c", "fsrs6_default": "#d62728"}


def reliability_plot(section: dict, *, size: int = 260, pad: int = 30) -> dict:
    """A calibration plot drawn server-side: per predictor, the points (mean predicted, observed) of its non-empty
    probability bins, as SVG polyline coordinates in a ``size`` x ``size`` box (pixels, y downwards)."""
    span = size - 2 * pad
    lines = []
    for name in PREDICTORS:
        bins = [b for b in section[name].get("reliability") or [] if b["count"]]
        points = " ".join(f"{pad + b['predicted'] * span:.1f},{size - pad - b['observed'] * span:.1f}" for b in bins)
        lines.append({"name": name, "colour": PLOT_COLOURS[name], "points": points})
    return {"size": size, "pad": pad, "far": size - pad, "lines": lines}
