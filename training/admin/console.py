"""The job console: what every job's admin has (the list, a job's page with its live progress, the status endpoint
the page polls, cancel and retry, as buttons and as list actions). The per-job admins (data_jobs.py,
training_runs.py) add their columns and results.

Launching needs the model's ``add`` permission, cancelling its ``cancel`` permission; a launched job is never
edited, only watched. Opening a job page also runs the stale-heartbeat check (see training/jobs/lifecycle.py).
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from curriculum.admin import format_when, permission_denied

from .. import jobs
from ..jobs.stages import stage_bar
from ..models import Job
from ..workers import format_duration, waiting_note

# The static "Status" fieldset of a job's page; status, progress and phase are in the live panel above it
# (templates/admin/training/job_change_form.html), which the page reloads from when the status changes.
# What cancelling does to a job in each state (the confirmation page says it before the operator agrees).
CANCEL_EFFECT = {
    "queued": "never starts: cancelled at once",
    "running": "is asked to stop at its next step; it keeps none of its results (they are kept only when a job succeeds)",
    "finished": "already finished: nothing to cancel",
}

STATUS_FIELDS = (
    "cancel_requested", "worker", "attempts", "created_by", "created", "started", "last_heartbeat", "finished",
    "duration", "error",
)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``plural(1, "job")`` -> "1 job", ``plural(3, "job")`` -> "3 jobs"."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def job_duration(job: Job, *, now: dt.datetime | None = None) -> float | None:
    """Seconds a job ran (finished - started), or has been running; None before it started."""
    if job.started_at is None:
        return None
    end = job.finished_at or (None if job.is_finished else (now or timezone.now()))
    return None if end is None else (end - job.started_at).total_seconds()


class JobAdmin(admin.ModelAdmin):
    change_form_template = "admin/training/job_change_form.html"
    # Few, narrow columns: the list must fit 1,400 px beside the navigation and the filters (the job's name
    # carries its curriculum).
    list_display = ("__str__", "status", "progress", "phase", "created_by", "created", "duration")
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
        """The whole job's bar across its stages, as on its page (stages.stage_bar): it only grows from stage to
        stage, where the phase's own percent (``progress_percent``) starts again from 0 at each one. A moving bar
        while the phase is none of the job's stages."""
        # a succeeded or queued job's place needs no stage list (a protocol evaluation's costs a query)
        bar = {Job.Status.SUCCEEDED: 100.0, Job.Status.QUEUED: 0.0}.get(obj.status)
        if bar is None:
            bar = stage_bar(obj)["bar"]
        if bar is None:
            return mark_safe('<progress max="100" style="width: 4em"></progress>')
        return format_html('<progress max="100" value="{}" style="width: 4em"></progress> {}%', bar, bar)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Job) -> str:
        return format_when(obj.created_at)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Job) -> str:
        return format_when(obj.started_at)

    @admin.display(description="last heartbeat", ordering="heartbeat_at")
    def last_heartbeat(self, obj: Job) -> str:
        return format_when(obj.heartbeat_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj: Job) -> str:
        return format_when(obj.finished_at)

    @admin.display(description="duration")
    def duration(self, obj: Job) -> str:
        seconds = job_duration(obj)
        if seconds is None:
            return "-"
        return format_duration(seconds) + ("" if obj.is_finished else " so far")

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

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # One button on a launch form ("Launch"), none on a job's page (it is watched, not edited).
        context.update(show_save_and_add_another=False, show_save_and_continue=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _denied(self, request, action: str) -> PermissionDenied:
        codename = {"add": f"add_{self.opts.model_name}", "cancel": f"cancel_{self.opts.model_name}",
                    "view": f"view_{self.opts.model_name}"}[action]
        return permission_denied(request, app_label=self.opts.app_label, codename=codename,
                                 doing=f"{action} {self.opts.verbose_name_plural}")

    # -- pages (each load runs the stale check, so a dead worker's job shows as failed)
    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise self._denied(request, "add")  # the admin's own denial would not say which permission
        extra_context = {"title": f"Launch a {self.opts.verbose_name}", **(extra_context or {})}
        return super().add_view(request, form_url, extra_context)

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
                "job_duration": self.duration(job),
                "retry_seed": self._retry_seed(job),
                "job_status": jobs.job_status(job=job),
                "status_url": reverse(f"{name}_status", args=[job.pk]),
                "cancel_url": reverse(f"{name}_cancel", args=[job.pk]),
                "retry_url": reverse(f"{name}_retry", args=[job.pk]),
                "can_cancel": not job.is_finished and self.has_cancel_permission(request, job),
                "can_retry": job.is_finished and self.has_add_permission(request),
                "waiting_note": waiting_note(job=job),  # a queued job whose queue no worker consumes says so
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
            raise self._denied(request, "view")
        jobs.mark_stale_jobs()
        return JsonResponse(jobs.job_status(job=get_object_or_404(self.model, pk=pk)))

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The page's "Cancel this job" link: a confirmation page (GET), then the cancel (POST with post=yes)."""
        if not self.has_cancel_permission(request):
            raise self._denied(request, "cancel")
        job = get_object_or_404(self.model, pk=pk)
        if request.method != "POST" or request.POST.get("post") != "yes":
            return self._cancel_confirmation(request, [job], back_url=self._change_url(job.pk))
        self._report_cancel(request, [(job, jobs.cancel_job(job=job))])
        return HttpResponseRedirect(self._change_url(job.pk))

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def retry(job: Job) -> int:
            changes = {}
            if self._retry_seed(job) is not None and request.POST.get("seed", "").strip():
                try:
                    changes["seed"] = int(request.POST["seed"])
                except ValueError:
                    self.message_user(request, f"Cannot retry {job}: seed: expected an integer, got "
                                               f"{request.POST['seed']!r}", messages.ERROR)
                    return job.pk
            new = self._retry(request, job, changes=changes)
            return new.pk if new else job.pk

        return self._post_on_job(request, pk, allowed=self.has_add_permission(request), act=retry, action="add")

    def _post_on_job(self, request: HttpRequest, pk: int, *, allowed: bool, act: Callable[[Job], int],
                     action: str) -> HttpResponse:
        """A button on the job's page: POST only, permission checked, then to the page of the job ``act`` returns."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not allowed:
            raise self._denied(request, action)
        return HttpResponseRedirect(self._change_url(act(get_object_or_404(self.model, pk=pk))))

    def _change_url(self, pk: int) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[pk])

    # -- actions
    @admin.action(description="Cancel the selected jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        # As Django's delete_selected: the first post shows a confirmation page, its "Yes" posts again with post=yes.
        if request.POST.get("post") != "yes":
            return self._cancel_confirmation(request, list(queryset), action="cancel_selected",
                                             back_url=reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}"
                                                              "_changelist"))
        self._report_cancel(request, [(job, jobs.cancel_job(job=job)) for job in queryset])

    def _cancel_confirmation(self, request, selected: list[Job], *, back_url: str,
                             action: str | None = None) -> TemplateResponse:
        """The page that asks before cancelling ``selected``: what each one is doing and what cancelling does to
        it (a queued job never starts; a running one stops at its next step; a finished one is left alone).
        ``action``: the list action to post back to (the changelist), else the job's own cancel URL."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Cancel {plural(len(selected), str(self.opts.verbose_name), str(self.opts.verbose_name_plural))}?",
            "selected": [(job, CANCEL_EFFECT["finished" if job.is_finished else job.status]) for job in selected],
            "action": action, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "back_url": back_url,
        }
        return TemplateResponse(request, "admin/training/cancel_confirmation.html", context)

    @admin.action(description="Retry: launch new jobs with the same parameters", permissions=["add"])
    def retry_selected(self, request, queryset):
        # The list has no seed field: a job whose retry offers a new seed (_retry_seed) takes it.
        for job in queryset:
            seed = self._retry_seed(job)
            self._retry(request, job, changes=None if seed is None else {"seed": seed})

    def _report_cancel(self, request, outcomes: list[tuple[Job, str]]) -> None:
        counts = Counter(outcome for _, outcome in outcomes)
        texts = {
            "cancelled": "{} cancelled before starting",
            "requested": "{} asked to stop at the next step (it will show as cancelled)",
            "finished": "{} already finished: nothing to cancel",
        }
        for outcome, count in counts.items():
            level = messages.WARNING if outcome == "finished" else messages.SUCCESS
            self.message_user(request, texts[outcome].format(plural(count, "job")), level)

    def _retry_seed(self, job: Job) -> int | None:
        """The seed a retry takes unless the operator says otherwise (the page's retry form offers it), for jobs
        whose retry with the same seed repeats their data; None: the same parameters."""
        return None

    def _retry_warning(self, old: Job, new: Job) -> str:
        """What the operator must know about a retry that repeats work (added to the success message)."""
        return ""

    def _retry(self, request, job: Job, *, changes: dict | None = None) -> Job | None:
        try:
            new = jobs.retry_job(job=job, created_by=request.user, changes=changes)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            self.message_user(request, f"Cannot retry {job}: {problems}", messages.ERROR)
            return None
        changed = ", ".join(f"{k} {v}" for k, v in (changes or {}).items())
        warning = self._retry_warning(job, new)
        self.message_user(
            request, f"{new} queued with the parameters of {job}" + (f" (but {changed})" if changed else "") + "."
            + (f" {warning}" if warning else ""), messages.WARNING if warning else messages.SUCCESS)
        return new



def json_block(value, *, summary: str = "raw JSON") -> str:
    """A JSON value folded in a ``<details>`` block (its first 20,000 characters), for a job's result."""
    return format_html("<details><summary>{}</summary><pre>{}</pre></details>", summary,
                       json.dumps(value, indent=2, sort_keys=True)[:20000])
