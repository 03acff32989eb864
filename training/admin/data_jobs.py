"""The admins of the jobs that make data: synthetic generation (retries take a new seed), review imports (launched
from a curriculum's page) and trajectory extraction (its dataset's statistics as charts)."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from curriculum import charts, svg
from curriculum.models import Curriculum

from .. import jobs
from ..data_sufficiency import training_data_summary
from ..models import Job, ReviewImportJob, SyntheticGenerationJob, TrajectoryExtractionJob
from .console import JobAdmin, json_block, plural


@admin.register(SyntheticGenerationJob)
class SyntheticGenerationJobAdmin(JobAdmin):
    result_fields = ("rows_written", "reviews_link")

    def _retry_seed(self, job: Job) -> int | None:
        return jobs.new_cohort_seed(job=job)

    def _retry_warning(self, old: Job, new: Job) -> str:
        if new.seed != old.seed or not old.rows_written:
            return ""
        return (f"It uses the same seed {old.seed}, so it adds a second, identical cohort of "
                f"{plural(old.num_users, 'learner')} to {old.curriculum.key}'s review log.")

    @admin.display(description="reviews")
    def reviews_link(self, obj: SyntheticGenerationJob):
        if not obj.rows_written:
            return "-"
        url = reverse("admin:curriculum_reviewlog_changelist") + f"?q={obj.batch_tag}"
        return format_html('<a href="{}">reviews with batch {}</a>', url, obj.batch_tag)


class ImportCurriculumForm(forms.Form):
    """The first step of a review import from the job list: which curriculum the file's reviews belong to."""

    curriculum = forms.ModelChoiceField(
        queryset=Curriculum.objects.order_by("key"), empty_label=None,
        help_text="Its items become this curriculum's concepts; the next page takes the file.",
    )


@admin.register(ReviewImportJob)
class ReviewImportJobAdmin(JobAdmin):
    """Launched from a curriculum's "Import review log" page (the upload is stored first); watched, cancelled and
    retried (with the stored file) here."""

    list_display = ("__str__", "curriculum", "dry_run", "status", "progress", "phase", "created_by", "created_at")
    result_fields = ("result_notes", "result_pretty", "reviews_link")

    def add_view(self, request, form_url="", extra_context=None):
        """Add: choose the curriculum, then its "Import review log" page takes the file (the upload streams to
        storage there). ``?curriculum=<id>`` goes straight to that page."""
        if not (self.has_add_permission(request) and request.user.has_perm("curriculum.add_reviewlog")):
            raise self._denied(request, "add")
        form = ImportCurriculumForm(request.GET if "curriculum" in request.GET else None)
        if form.is_valid():
            return HttpResponseRedirect(reverse("admin:curriculum_curriculum_import_reviews",
                                                args=[form.cleaned_data["curriculum"].pk]))
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form,
                   "title": f"Launch a {self.opts.verbose_name}"}
        return TemplateResponse(request, "admin/training/reviewimportjob_add.html", context)

    @admin.display(description="notes")
    def result_notes(self, obj: ReviewImportJob):
        notes = (obj.result or {}).get("notes") or []
        return format_html_join(mark_safe("<br>"), "{}", ((note,) for note in notes)) if notes else "-"

    @admin.display(description="result")
    def result_pretty(self, obj: ReviewImportJob):
        return json_block(obj.result) if obj.result else "-"

    @admin.display(description="reviews")
    def reviews_link(self, obj: ReviewImportJob):
        batch = (obj.result or {}).get("batch")
        if not batch or obj.dry_run:
            return "-"
        url = reverse("admin:curriculum_reviewlog_changelist") + f"?q={batch}"
        return format_html('<a href="{}">reviews with batch {}</a>', url, batch)


@admin.register(TrajectoryExtractionJob)
class TrajectoryExtractionJobAdmin(JobAdmin):
    list_display = ("__str__", "status", "progress", "rows_read", "created", "duration")
    result_fields = ("version", "rows_read", "dataset_path", "statistics_summary", "statistics_charts")

    @admin.display(description="dataset")
    def statistics_summary(self, obj: TrajectoryExtractionJob):
        stats = obj.statistics or {}
        if not stats:
            return "-"
        actions = stats.get("actions") or {}
        entropy = actions.get("normalised_entropy")
        warnings = training_data_summary(statistics=stats, concepts=int(actions.get("count") or 0))["warnings"]
        return format_html(
            "{} of {} in all; {} concepts, most practised {}, least {}; balance {} (1 = every concept equally often){}",
            plural(stats.get("episodes", 0), "episode"), plural(stats.get("steps", 0), "step"),
            actions.get("count", "?"), actions.get("most_common") or "-", actions.get("least_common") or "-",
            "-" if entropy is None else f"{entropy:.2f}",
            format_html_join("", '<div class="warning">Warning: {}.</div>', ((w,) for w in warnings)),
        )

    @admin.display(description="statistics")
    def statistics_charts(self, obj: TrajectoryExtractionJob):
        stats = obj.statistics or {}
        if not stats:
            return "-"
        counts = (stats.get("actions") or {}).get("counts") or {}
        return format_html(
            '<div class="crl-charts">{}{}{}</div>{}',
            charts.distribution_chart(summary=stats.get("return") or {}, title="Episode returns",
                                      x_label="return (sum of rewards per episode)"),
            charts.distribution_chart(summary=stats.get("episode_length") or {}, title="Episode lengths",
                                      x_label="reviews per episode", integers=True),
            svg.bar_chart(labels=list(counts), values=[float(v) for v in counts.values()],
                          title="How often each concept was practised", x_label="concept", y_label="reviews"),
            json_block(stats, summary="all statistics (JSON)"),
        )
