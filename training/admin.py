"""Admin for jobs: launch forms (adding a job enqueues it), live progress, cancel and retry.

Launching needs the model's ``add`` permission, cancelling its ``cancel`` permission; a launched job is never
edited, only watched. Opening a job page also runs the stale-heartbeat check (see training/jobs/lifecycle.py).
"""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from curriculum import charts
from curriculum.admin import PolicyModelAdmin, format_when, permission_denied
from curriculum.admin_text import protocol_columns
from curriculum.evaluation_protocol import EvaluationProtocol, protocol_of
from curriculum.services import fixed_evaluation_protocol

from . import jobs
from .models import Job, ReviewImportJob, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob
from .spec import TrainingSpec
from .workers import format_duration

# The static "Status" fieldset of a job's page; status, progress and phase are in the live panel above it
# (templates/admin/training/job_change_form.html), which the page reloads from when the status changes.
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
        return format_html('<progress max="100" value="{}" style="width: 4em"></progress> {}%', obj.progress_percent,
                           obj.progress_percent)

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
        def cancel(job: Job) -> int:
            self._report_cancel(request, [(job, jobs.cancel_job(job=job))])
            return job.pk

        return self._post_on_job(request, pk, allowed=self.has_cancel_permission(request), act=cancel, action="cancel")

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
            self.message_user(request, texts[outcome].format(plural(count, "job")), level)

    def _retry_seed(self, job: Job) -> int | None:
        """The seed a retry form offers (a new one), for jobs whose retry with the same seed repeats their data."""
        return None

    def _retry_warning(self, old: Job, new: Job) -> str:
        """What the operator must know about a retry that repeats work (added to the success message)."""
        return ""

    def _retry(self, request, job: Job, *, changes: dict | None = None) -> Job | None:
        try:
            if changes:
                fields = {name: getattr(job, name) for name in jobs.PARAMETERS[type(job)]}
                new = jobs.launch_job(job=type(job)(created_by=request.user, **{**fields, **changes}))
            else:
                new = jobs.retry_job(job=job, created_by=request.user)
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


def _json_block(value, *, summary: str = "raw JSON") -> str:
    return format_html("<details><summary>{}</summary><pre>{}</pre></details>", summary,
                       json.dumps(value, indent=2, sort_keys=True)[:20000])


@admin.register(SyntheticGenerationJob)
class SyntheticGenerationJobAdmin(JobAdmin):
    result_fields = ("rows_written", "reviews_link")

    def _retry_seed(self, job: Job) -> int | None:
        return job.seed + 1

    def _retry_warning(self, old: Job, new: Job) -> str:
        if new.seed != old.seed or not old.rows_written:
            return ""
        return (f"It uses the same seed {old.seed}, so it adds a second, identical cohort of "
                f"{plural(old.num_users, 'learner')} to {old.curriculum.key}'s review log.")

    @admin.action(description="Retry: launch new jobs with the same parameters", permissions=["add"])
    def retry_selected(self, request, queryset):
        # The list has no seed field: each retry takes a new seed (the old one + 1), so no cohort is repeated.
        for job in queryset:
            self._retry(request, job, changes={"seed": job.seed + 1})

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
    list_display = ("__str__", "status", "progress", "rows_read", "created", "duration")
    result_fields = ("version", "rows_read", "dataset_path", "statistics_summary", "statistics_charts")

    @admin.display(description="dataset")
    def statistics_summary(self, obj: TrajectoryExtractionJob):
        stats = obj.statistics or {}
        if not stats:
            return "-"
        actions = stats.get("actions") or {}
        entropy = actions.get("normalised_entropy")
        return format_html(
            "{} of {} in all; {} concepts, most practised {}, least {}; balance {} (1 = every concept equally often)",
            plural(stats.get("episodes", 0), "episode"), plural(stats.get("steps", 0), "step"),
            actions.get("count", "?"), actions.get("most_common") or "-", actions.get("least_common") or "-",
            "-" if entropy is None else f"{entropy:.2f}",
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
                                      x_label="reviews per episode"),
            charts.bar_chart(labels=list(counts), values=[float(v) for v in counts.values()],
                             title="How often each concept was practised", x_label="concept", y_label="reviews"),
            _json_block(stats, summary="all statistics (JSON)"),
        )


# Which data sources use a parameter (the others ignore it): the launch form shows a field only for those.
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "dataset": (TrainingRun.DataSource.DATASET,),
    "num_users": (TrainingRun.DataSource.SYNTHETIC,),
}
# On a run's page, beyond SOURCE_FIELDS: the parameters only a synthetic run's data uses (a run on a review log or
# a dataset takes its concepts from the curriculum and its reviews from the data). The evaluation's students and
# reviews are shown as the protocol the evaluation used ("evaluation" below), not as the run's fields.
RUN_PAGE_SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    **SOURCE_FIELDS,
    "interactions": (TrainingRun.DataSource.SYNTHETIC,),
    "concepts": (TrainingRun.DataSource.SYNTHETIC,),
    "eval_students": (),
}


def protocol_note(protocol: EvaluationProtocol) -> str:
    """The sentence the add form and a run's page show about a curriculum's fixed protocol."""
    return (f"The curriculum's evaluation protocol decides the evaluation: {protocol.students} students, "
            f"{protocol.interactions} reviews each (seed {protocol.seed}); the run's \"Evaluation students\" and "
            f"the evaluation's share of \"Reviews per learner\" are not used.")


class TrainingRunLaunchForm(forms.ModelForm):
    """The add form: the fields of the chosen data source; ``concepts`` comes from the curriculum (save_model)."""

    class Meta:
        model = TrainingRun
        fields = [name for name in jobs.PARAMETERS[TrainingRun] if name != "concepts"]
        labels = {"num_users": "Learners to simulate", "interactions": "Reviews per learner",
                  "eval_students": "Evaluation students", "no_cuda": "CPU only"}
        help_texts = {
            "curriculum": "Its concepts are the actions: the run takes the concept count from the curriculum.",
            "interactions": "Reviews per simulated learner (synthetic data source). Also the reviews per evaluation "
                            "student, but only while the curriculum has no evaluation protocol (the first run "
                            "sets it).",
            "eval_students": "Held-out simulated students of the evaluation, only while the curriculum has no "
                             "evaluation protocol (the first run sets it; later runs use the protocol's).",
        }

    def clean(self):
        data = super().clean()
        source = data.get("data_source")
        # A field the chosen source does not use is ignored, whatever the (hidden) input held.
        for name, sources in SOURCE_FIELDS.items():
            if source not in sources:
                data[name] = None if name == "dataset" else TrainingSpec.default(name)
                setattr(self.instance, name, data[name])
        dataset = data.get("dataset")
        if source == TrainingRun.DataSource.DATASET and dataset is not None and data.get("curriculum") is not None \
                and dataset.curriculum_id != data["curriculum"].pk:
            self.add_error("dataset", f"{dataset} was extracted from {dataset.curriculum.key!r}, not from "
                                      f"{data['curriculum'].key!r}: choose that curriculum or another dataset")
        return data


@admin.register(TrainingRun)
class TrainingRunAdmin(JobAdmin):
    # The columns operators compare runs by (within 1,400 px): data, key parameters, final loss, the evaluation
    # under the protocol (DT mean, lift over random), duration and device.
    # (the version it registered is on its page and in the version list's "data / run" column)
    list_display = ("__str__", "status", "progress", "data", "parameters", "latest_loss", "evaluation_summary",
                    "duration_device")
    list_filter = ("status", "data_source", "curriculum")
    list_select_related = ("curriculum", "created_by", "policy", "dataset")
    result_fields = ("device", "epoch_of", "latest_loss", "loss_curve", "policy_link", "metrics_chart")
    add_form_template = "admin/training/trainingrun_add_form.html"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TrainingRunLaunchForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ("curriculum", "data_source")}),
                ("Data", {"fields": ("dataset", "num_users", "interactions")}),
                ("Training", {"fields": ("epochs", "batch_size", "seed", "no_cuda", "eval_students")}),
            ]
        shown = tuple(name for name in jobs.PARAMETERS[TrainingRun]
                      if obj.data_source in RUN_PAGE_SOURCE_FIELDS.get(name, (obj.data_source,)))
        return [("Parameters", {"fields": (*shown, "evaluation")}), *super().get_fieldsets(request, obj)[1:]]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else (*super().get_readonly_fields(request, obj), "evaluation")

    def add_view(self, request, form_url="", extra_context=None):
        from curriculum.models import Curriculum

        notes = {str(c.pk): protocol_note(p) for c in Curriculum.objects.all() if (p := fixed_evaluation_protocol(curriculum=c))}
        return super().add_view(request, form_url, {**(extra_context or {}), "source_fields": SOURCE_FIELDS,
                                                    "protocol_notes": notes})

    @admin.display(description="evaluation protocol")
    def evaluation(self, obj: TrainingRun) -> str:
        """The students and reviews the evaluation used (its recorded protocol), else will use."""
        used = protocol_of(obj.metrics)
        if used is not None:
            return f"{used.label} (the curriculum's evaluation protocol)"
        fixed = fixed_evaluation_protocol(curriculum=obj.curriculum)
        if fixed is not None:
            return protocol_note(fixed)
        return (f"{obj.eval_students} students, {obj.interactions} reviews each: this run's values, which become the "
                f"curriculum's evaluation protocol")

    def save_model(self, request, obj, form, change) -> None:
        curriculum = obj.dataset.curriculum if obj.data_source == TrainingRun.DataSource.DATASET and obj.dataset \
            else obj.curriculum
        obj.concepts = curriculum.concepts.count()
        super().save_model(request, obj, form, change)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The spec's bounds on the form too (min/max in the page); the model's validators say the same.
        if db_field.name in TrainingSpec.names():
            kwargs = {**TrainingSpec.form_field_options(db_field.name), **kwargs}
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "dataset":
            kwargs["queryset"] = TrajectoryExtractionJob.objects.filter(status=Job.Status.SUCCEEDED).select_related("curriculum")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # epoch and loss read the same fields as the live panel (job_status) and carry data-live, so the page's
    # poller updates them together: the header and the Result section always agree.
    @admin.display(description="epoch")
    def epoch_of(self, obj: TrainingRun):
        return format_html('<span data-live="epoch">{}</span> / {}', obj.epoch, obj.epochs)

    @admin.display(description="loss")
    def latest_loss(self, obj: TrainingRun):
        return format_html('<span data-live="loss">{}</span>', "-" if obj.loss is None else f"{obj.loss:.4f}")

    @admin.display(description="time, device")
    def duration_device(self, obj: TrainingRun):
        return format_html("{}<br><span class=\"quiet\">{}</span>", self.duration(obj), obj.device or "-")

    @admin.display(description="data")
    def data(self, obj: TrainingRun):
        if obj.data_source == TrainingRun.DataSource.DATASET and obj.dataset_id:
            return format_html('<a href="{}">{}</a>', reverse("admin:training_trajectoryextractionjob_change",
                                                              args=[obj.dataset_id]), obj.dataset)
        return obj.data_source.replace("_", " ")

    @admin.display(description="parameters")
    def parameters(self, obj: TrainingRun):
        """users x interactions (synthetic only), epochs, batch size, seed: ``500x100 · 10 ep · b64 · s42``."""
        training = f"{obj.epochs} ep \u00b7 b{obj.batch_size} \u00b7 s{obj.seed}"
        if obj.data_source != TrainingRun.DataSource.SYNTHETIC:
            return training
        return format_html("{}x{}<br>{}", obj.num_users, obj.interactions, training)

    @admin.display(description="DT, lift")
    def evaluation_summary(self, obj: TrainingRun):
        """The DT mean and its lift over random in the run's evaluation (under the protocol it records)."""
        mean, over = protocol_columns(obj.metrics)
        return "-" if mean == "-" else format_html('{}<br><span class="quiet">{} vs random</span>', mean, over)

    @admin.display(description="loss curve")
    def loss_curve(self, obj: TrainingRun):
        if not obj.loss_steps and not obj.loss_history:
            return "-"
        return charts.loss_curve(loss_steps=obj.loss_steps, loss_history=obj.loss_history)

    @admin.display(description="version", ordering="policy__version")
    def version(self, obj: TrainingRun) -> str:
        return "-" if obj.policy_id is None else f"v{obj.policy.version} {obj.policy.status}"

    @admin.display(description="registered version")
    def policy_link(self, obj: TrainingRun):
        if obj.policy_id is None:
            return "-"
        url = reverse("admin:curriculum_policymodel_change", args=[obj.policy_id])
        return format_html('<a href="{}">{}</a> (<a href="{}">orchestrator</a>)', url, obj.policy,
                           reverse("curriculum:orchestrator"))

    # The same chart and table as on the version's page (they read obj.metrics only).
    metrics_chart = PolicyModelAdmin.evaluation
    metrics_table = PolicyModelAdmin.metrics_table
