"""The training runs' admin: the launch form (launch_form.py) launches through training.jobs.launch_training_run;
a run's page shows the parameters its data source used, the evaluation protocol, progress, loss and the version it
registered; the list compares runs."""
from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from curriculum import charts
from curriculum.admin import PolicyModelAdmin
from curriculum.admin_text import protocol_columns
from curriculum.evaluation_protocol import protocol_of
from curriculum.models import Curriculum
from curriculum.services import fixed_evaluation_protocol

from .. import jobs
from ..hardware import describe
from ..models import Job, TrainingRun, TrajectoryExtractionJob
from ..rl.model_config import DEFAULT_ATTENTION_WINDOW
from ..spec import TrainingSpec
from .console import JobAdmin
from .launch_form import TrainingRunLaunchForm, protocol_note

# Which data sources read a parameter (the others ignore it): the launch form shows a field only for those.
SOURCE_FIELDS: dict[str, tuple[str, ...]] = jobs.parameter_sources()
# On a run's page, beyond SOURCE_FIELDS: the parameters only a synthetic run's data uses (a run on a review log or
# a dataset takes its concepts from the curriculum and its reviews from the data). The evaluation's students and
# reviews are shown as the protocol the evaluation used ("evaluation" below), not as the run's fields.
RUN_PAGE_SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    **SOURCE_FIELDS,
    "interactions": (TrainingRun.DataSource.SYNTHETIC,),
    "concepts": (TrainingRun.DataSource.SYNTHETIC,),
    "eval_students": (),
    # the policy-gradient fine-tuning: a run on another data source cannot have it (TrainingRun.clean refuses it)
    "policy_gradient_rounds": (TrainingRun.DataSource.SYNTHETIC,),
}


@admin.register(TrainingRun)
class TrainingRunAdmin(JobAdmin):
    # The columns operators compare runs by (within 1,400 px): data, key parameters, final loss, the evaluation
    # under the protocol (DT mean, lift over random), duration and device.
    # (the version it registered is on its page and in the version list's "data / run" column)
    list_display = ("__str__", "status", "progress", "data", "parameters", "latest_loss", "evaluation_summary",
                    "duration_device")
    list_filter = ("status", "data_source", "curriculum")
    list_select_related = ("curriculum", "created_by", "policy", "dataset")
    result_fields = ("device", "trained_on", "epoch_of", "latest_loss", "loss_curve", "training_data", "policy_link",
                     "metrics_chart")
    add_form_template = "admin/training/trainingrun_add_form.html"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TrainingRunLaunchForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ("curriculum", "data_source")}),
                ("Data", {"fields": ("dataset", "num_users", "interactions", "families")}),
                ("Training", {"fields": ("epochs", "batch_size", "seed", "no_cuda", "attention_window",
                                         "policy_gradient_rounds", "eval_students")}),
            ]
        # the attention window as asked and, once the run registered its version, as trained (``attention``)
        shown = tuple("attention" if name == "attention_window" else name for name in jobs.PARAMETERS[TrainingRun]
                      if obj.data_source in RUN_PAGE_SOURCE_FIELDS.get(name, (obj.data_source,)))
        return [("Parameters", {"fields": (*shown, "evaluation")}), *super().get_fieldsets(request, obj)[1:]]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else (*super().get_readonly_fields(request, obj), "evaluation", "attention")

    @admin.display(description="attention window")
    def attention(self, obj: TrainingRun) -> str:
        """The window the run asked for ("default (the widest exact window, 30 tokens)", "full attention", "12
        tokens") and, when it registered a version, the window that version trained with (its config's
        ``attention_window``; absent or null: full attention)."""
        asked = _window_text(obj.attention_window, default=f"default (the widest exact window, "
                                                            f"{DEFAULT_ATTENTION_WINDOW} tokens)")
        config = obj.policy.config if obj.policy_id is not None else None
        if not config:
            return asked
        return f"{asked}; trained: {_window_text(config.get('attention_window') or 0)}"

    def add_view(self, request, form_url="", extra_context=None):
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
        launched = jobs.launch_training_run(curriculum=form.cleaned_data["curriculum"], created_by=request.user,
                                            **form.launch_parameters())
        obj.pk = launched.pk
        obj.refresh_from_db()  # the admin's next steps (history entry, message, redirect) read the launched run
        if form.unused_message():
            self.message_user(request, form.unused_message(), messages.WARNING)

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

    @admin.display(description="trained on")
    def trained_on(self, obj: TrainingRun):
        """Device, dtype, optimiser steps/s and seconds per stage (training.hardware.describe), after the no-GPU
        warning of a run that asked for a GPU on a worker without one."""
        warning = (obj.hardware or {}).get("warning", "")
        text = describe(obj.hardware or {}) or "-"
        if not warning:
            return text
        return format_html('<ul class="messagelist"><li class="warning">{}</li></ul>{}', warning, text)

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

    @admin.display(description="trained on")
    def training_data(self, obj: TrainingRun):
        """The training data's size and, below training.data_sufficiency's thresholds, a warning per threshold."""
        data = (obj.metrics or {}).get("training_data")
        if not data:
            return "-"
        return format_html("{} episodes (learners), {} reviews, {} concepts{}", data.get("episodes"), data.get("steps"),
                           data.get("concepts"), format_html_join("", '<div class="warning">Warning: {}.</div>',
                                                                  ((w,) for w in data.get("warnings") or ())))

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

    @admin.display(description="evaluation")
    def metrics_chart(self, obj: TrainingRun):
        """The run's evaluation (``obj.metrics``): the chart, the table per policy and the table per student family,
        as on the version's page, and a link to the version it registered, whose page also has the evaluation on
        its fitted students (``evaluation_protocol.students_like``) under the curriculum's protocol. "not evaluated" while the run has no
        evaluation (before its evaluation stage, or failed or cancelled earlier).

        Its own method rather than PolicyModelAdmin.evaluation: that one also reads what only a version has (its
        evaluation under the curriculum's protocol), and the AttributeError it raised on a run made the admin
        show "-" for every evaluated run."""
        if not (obj.metrics or {}).get("results"):
            return "not evaluated"
        version = ""
        if obj.policy_id is not None:
            version = format_html(
                '<p>The full evaluation, with its fitted students (like the curriculum\'s own, or like the training '
                'cohort after synthetic training) under its protocol, is on the page of <a href="{}">{}</a>.</p>',
                reverse("admin:curriculum_policymodel_change", args=[obj.policy_id]), obj.policy)
        return format_html('<div class="crl-charts">{}</div>{}{}{}', charts.evaluation_chart(metrics=obj.metrics),
                           self.metrics_table(obj), PolicyModelAdmin.families_table(obj), version)

    # The version page's table of the evaluation per policy (it reads obj.metrics only).
    metrics_table = PolicyModelAdmin.metrics_table


def _window_text(window: int | None, *, default: str = "") -> str:
    """An attention window in words: None ``default``, 0 "full attention", W "W tokens"."""
    if window is None:
        return default
    return "full attention" if window == 0 else f"{window} tokens"
