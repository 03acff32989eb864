"""Admin for jobs: launch forms (adding a job enqueues it), live progress, cancel and retry.

Launching needs the model's ``add`` permission, cancelling its ``cancel`` permission; a launched job is never
edited, only watched. Opening a job page also runs the stale-heartbeat check (see training/jobs/lifecycle.py).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from curriculum.admin import PolicyModelAdmin

from . import jobs
from .spec import TrainingSpec
from .models import Job, ReviewImportJob, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob

STATUS_FIELDS = (
    "status", "progress", "phase", "cancel_requested", "worker", "attempts", "created_by", "created_at",
    "started_at", "heartbeat_at", "finished_at", "error",
)


class JobAdmin(admin.ModelAdmin):
    change_form_template = "admin/training/job_change_form.html"
    list_display = ("__str__", "curriculum", "status", "progress", "phase", "created_by", "created_at", "finished_at")
    list_filter = ("status", "curriculum")
    list_select_related = ("curriculum", "created_by")
    actions = ["cancel_selected", "retry_selected"]
    result_fields: tuple[str, ...] = ()

    # -- what the pages show
    def get_fieldsets(self, request, obj=None):
        parameters = jobs.PARAMETERS[self.model]
        if obj is None:
            return [(None, {"fields": parameters})]
        sets = [("Parameters", {"fields": parameters}), ("Status", {"fields": STATUS_FIELDS})]
        if self.result_fields:
            sets.append(("Result", {"fields": self.result_fields}))
        return sets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (*jobs.PARAMETERS[self.model], *STATUS_FIELDS, *self.result_fields)

    @admin.display(description="progress")
    def progress(self, obj: Job):
        return format_html('<progress max="100" value="{}"></progress> {}%', obj.progress_percent, obj.progress_percent)

    # -- permissions: launched jobs are immutable; launching is `add`, cancelling is `cancel`
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_finished)

    def has_cancel_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_{self.opts.model_name}")

    # -- launching
    def save_model(self, request, obj, form, change) -> None:
        obj.created_by = request.user
        jobs.launch_job(job=obj)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"{obj} queued; this page follows its progress.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(obj.pk))

    # -- pages (each load runs the stale check, so a dead worker's job shows as failed)
    def changelist_view(self, request, extra_context=None):
        jobs.mark_stale_jobs()
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        jobs.mark_stale_jobs()
        job = self.get_object(request, object_id)
        if job is not None:
            name = f"admin:{self.opts.app_label}_{self.opts.model_name}"
            extra_context = {
                **(extra_context or {}),
                "job": job,
                "job_status": jobs.job_status(job=job),
                "status_url": reverse(f"{name}_status", args=[job.pk]),
                "cancel_url": reverse(f"{name}_cancel", args=[job.pk]),
                "retry_url": reverse(f"{name}_retry", args=[job.pk]),
                "can_cancel": not job.is_finished and self.has_cancel_permission(request, job),
                "can_retry": job.is_finished and self.has_add_permission(request),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/status/", wrap(self.status_view), name=f"{name}_status"),
            path("<int:pk>/cancel/", wrap(self.cancel_view), name=f"{name}_cancel"),
            path("<int:pk>/retry/", wrap(self.retry_view), name=f"{name}_retry"),
            *super().get_urls(),
        ]

    def status_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """The progress poller's endpoint (staff with view permission)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        jobs.mark_stale_jobs()
        return JsonResponse(jobs.job_status(job=get_object_or_404(self.model, pk=pk)))

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def cancel(job: Job) -> int:
            self._report_cancel(request, [(job, jobs.cancel_job(job=job))])
            return job.pk

        return self._post_on_job(request, pk, allowed=self.has_cancel_permission(request), act=cancel)

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def retry(job: Job) -> int:
            new = self._retry(request, job)
            return new.pk if new else job.pk

        return self._post_on_job(request, pk, allowed=self.has_add_permission(request), act=retry)

    def _post_on_job(self, request: HttpRequest, pk: int, *, allowed: bool, act: Callable[[Job], int]) -> HttpResponse:
        """A button on the job's page: POST only, permission checked, then to the page of the job ``act`` returns."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not allowed:
            raise PermissionDenied
        return HttpResponseRedirect(self._change_url(act(get_object_or_404(self.model, pk=pk))))

    def _change_url(self, pk: int) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[pk])

    # -- actions
    @admin.action(description="Cancel the selected jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        self._report_cancel(request, [(job, jobs.cancel_job(job=job)) for job in queryset])

    @admin.action(description="Retry: launch new jobs with the same parameters", permissions=["add"])
    def retry_selected(self, request, queryset):
        for job in queryset:
            self._retry(request, job)

    def _report_cancel(self, request, outcomes: list[tuple[Job, str]]) -> None:
        counts = Counter(outcome for _, outcome in outcomes)
        texts = {
            "cancelled": "{} cancelled before starting",
            "requested": "{} asked to stop at the next step (it will show as cancelled)",
            "finished": "{} already finished: nothing to cancel",
        }
        for outcome, count in counts.items():
            level = messages.WARNING if outcome == "finished" else messages.SUCCESS
            self.message_user(request, texts[outcome].format(f"{count} job(s)"), level)

    def _retry(self, request, job: Job) -> Job | None:
        try:
            new = jobs.retry_job(job=job, created_by=request.user)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            self.message_user(request, f"Cannot retry {job}: {problems}", messages.ERROR)
            return None
        self.message_user(request, f"{new} queued with the parameters of {job}.", messages.SUCCESS)
        return new


def _json_block(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True)[:20000])


@admin.register(SyntheticGenerationJob)
class SyntheticGenerationJobAdmin(JobAdmin):
    result_fields = ("rows_written", "reviews_link")

    @admin.display(description="reviews")
    def reviews_link(self, obj: SyntheticGenerationJob):
        if not obj.rows_written:
            return "-"
        url = reverse("admin:curriculum_reviewlog_changelist") + f"?q={obj.batch_tag}"
        return format_html('<a href="{}">reviews with batch {}</a>', url, obj.batch_tag)


@admin.register(ReviewImportJob)
class ReviewImportJobAdmin(JobAdmin):
    """Launched from a curriculum's "Import review log" page (the upload is stored first); watched, cancelled and
    retried (with the stored file) here."""

    list_display = ("__str__", "curriculum", "dry_run", "status", "progress", "phase", "created_by", "created_at")
    result_fields = ("result_pretty", "reviews_link")

    def add_view(self, request, form_url="", extra_context=None):
        self.message_user(request, "Open a curriculum and use \"Import review log\" to upload a file.", messages.INFO)
        return HttpResponseRedirect(reverse("admin:curriculum_curriculum_changelist"))

    @admin.display(description="result")
    def result_pretty(self, obj: ReviewImportJob):
        return _json_block(obj.result) if obj.result else "-"

    @admin.display(description="reviews")
    def reviews_link(self, obj: ReviewImportJob):
        batch = (obj.result or {}).get("batch")
        if not batch or obj.dry_run:
            return "-"
        url = reverse("admin:curriculum_reviewlog_changelist") + f"?q={batch}"
        return format_html('<a href="{}">reviews with batch {}</a>', url, batch)


@admin.register(TrajectoryExtractionJob)
class TrajectoryExtractionJobAdmin(JobAdmin):
    list_display = ("__str__", "curriculum", "version", "status", "progress", "rows_read", "created_at", "finished_at")
    result_fields = ("version", "rows_read", "dataset_path", "statistics_pretty")

    @admin.display(description="statistics")
    def statistics_pretty(self, obj: TrajectoryExtractionJob):
        return _json_block(obj.statistics) if obj.statistics else "-"


@admin.register(TrainingRun)
class TrainingRunAdmin(JobAdmin):
    list_display = ("__str__", "curriculum", "status", "progress", "epoch", "latest_loss", "device", "policy", "created_at")
    list_select_related = ("curriculum", "created_by", "policy")
    result_fields = ("device", "epoch", "latest_loss", "loss_curve", "policy_link", "metrics_table")

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The spec's bounds on the form too (min/max in the page); the model's validators say the same.
        if db_field.name in TrainingSpec.names():
            kwargs = {**TrainingSpec.form_field_options(db_field.name), **kwargs}
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "dataset":
            kwargs["queryset"] = TrajectoryExtractionJob.objects.filter(status=Job.Status.SUCCEEDED).select_related("curriculum")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="loss")
    def latest_loss(self, obj: TrainingRun) -> str:
        return "-" if obj.loss is None else f"{obj.loss:.4f}"

    @admin.display(description="loss curve")
    def loss_curve(self, obj: TrainingRun):
        return loss_curve_svg(losses=obj.loss_history) if obj.loss_history else "-"

    @admin.display(description="registered version")
    def policy_link(self, obj: TrainingRun):
        if obj.policy_id is None:
            return "-"
        url = reverse("admin:curriculum_policymodel_change", args=[obj.policy_id])
        return format_html('<a href="{}">{}</a> (<a href="{}">orchestrator</a>)', url, obj.policy,
                           reverse("curriculum:orchestrator"))

    # The same table as on the version's page (it reads obj.metrics only).
    metrics_table = PolicyModelAdmin.metrics_table


def loss_curve_svg(*, losses: list[float], width: int = 480, height: int = 180) -> str:
    """The training loss per epoch as an inline SVG line chart (no JavaScript, no external files)."""
    pad_left, pad_right, pad_top, pad_bottom = 56, 12, 12, 30
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    n = len(losses)

    def x(i: int) -> float:
        return pad_left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return pad_top + plot_h * (high - v) / span

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(losses))
    dots = format_html_join("", '<circle cx="{}" cy="{}" r="2.5"><title>epoch {}: {}</title></circle>',
                            ((f"{x(i):.1f}", f"{y(v):.1f}", i + 1, f"{v:.4f}") for i, v in enumerate(losses)))
    return format_html(
        '<svg class="loss-curve" role="img" aria-label="training loss per epoch" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" font-size="11" fill="currentColor">'
        '<line x1="{l}" y1="{t}" x2="{l}" y2="{b}" stroke="#999"/><line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/>'
        '<text x="{tl}" y="{ty_high}" text-anchor="end">{high}</text>'
        '<text x="{tl}" y="{ty_low}" text-anchor="end">{low}</text>'
        '<text x="{l}" y="{tx}" text-anchor="middle">1</text><text x="{r}" y="{tx}" text-anchor="end">{n}</text>'
        '<text x="{mid}" y="{tx}" text-anchor="middle">epoch</text>'
        '<polyline points="{points}" fill="none" stroke="#417690" stroke-width="2"/><g fill="#417690">{dots}</g></svg>',
        w=width, h=height, l=pad_left, r=width - pad_right, t=pad_top, b=pad_top + plot_h, tl=pad_left - 6,
        ty_high=pad_top + 4, ty_low=pad_top + plot_h, tx=height - 10, mid=pad_left + plot_w // 2,
        high=f"{high:.3f}", low=f"{low:.3f}", n=n, points=points, dots=dots,
    )
