"""The admin of protocol evaluation jobs (a version evaluated under its curriculum's protocol): launched from the
orchestrator's "Evaluate under the protocol" or from Add here (choose the version), watched (live progress),
cancelled and retried here."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from curriculum.models import PolicyModel

from ..jobs.protocol_evaluation import launch_protocol_evaluation
from ..models import ProtocolEvaluationJob
from .console import JobAdmin


class VersionChoiceField(forms.ModelChoiceField):
    """A policy version named as operators read it: "algebra v3 (candidate)"."""

    def label_from_instance(self, obj: PolicyModel) -> str:
        return f"{obj.curriculum.key} v{obj.version} ({obj.get_status_display().lower()})"


class EvaluateVersionForm(forms.Form):
    """Protocol evaluation jobs > Add: the version to evaluate under its curriculum's current protocol."""

    policy = VersionChoiceField(
        label="version", empty_label=None,
        queryset=PolicyModel.objects.select_related("curriculum").order_by("curriculum__key", "-version"),
        help_text="Evaluated under its curriculum's current protocol on a worker (the same as the orchestrator's "
        '"Evaluate under the protocol"); one already queued or running for it is shown instead of a second.',
    )


@admin.register(ProtocolEvaluationJob)
class ProtocolEvaluationJobAdmin(JobAdmin):
    list_display = ("__str__", "status", "progress", "phase", "created_by", "created", "duration")
    list_select_related = ("curriculum", "policy", "created_by")
    result_fields = ("dt_recall", "version_link")

    def add_view(self, request, form_url="", extra_context=None):
        """Add: choose the version (GET), launch its evaluation through training.jobs (POST), then its page."""
        if not self.has_add_permission(request):
            raise self._denied(request, "add")
        form = EvaluateVersionForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            policy = form.cleaned_data["policy"]
            try:
                job, launched = launch_protocol_evaluation(policy=policy, created_by=request.user)
            except ValidationError as exc:
                form.add_error("policy", f"cannot evaluate {policy.curriculum.key} v{policy.version}: "
                                         f"{'; '.join(exc.messages)}")
            else:
                self.message_user(request, f"{job} queued; this page follows its progress." if launched else
                                  f"An evaluation of {policy.curriculum.key} v{policy.version} under this protocol "
                                  f"is already {job.status}: this is its page.",
                                  messages.SUCCESS if launched else messages.INFO)
                return HttpResponseRedirect(self._change_url(job.pk))
        context = {**self.admin_site.each_context(request), "opts": self.opts, "form": form,
                   "title": f"Launch a {self.opts.verbose_name}"}
        return TemplateResponse(request, "admin/training/protocolevaluationjob_add.html", context)

    @admin.display(description="DT mean final recall")
    def dt_recall(self, obj: ProtocolEvaluationJob) -> str:
        value = (obj.result or {}).get("dt")
        return "-" if value is None else f"{value:.4f}"

    @admin.display(description="version")
    def version_link(self, obj: ProtocolEvaluationJob):
        orchestrator = reverse("curriculum:orchestrator") + f"#version-{obj.curriculum.key}-{obj.policy.version}"
        return format_html('<a href="{}">{} v{}</a> (<a href="{}">on the orchestrator</a>)',
                           reverse("admin:curriculum_policymodel_change", args=[obj.policy_id]), obj.curriculum.key,
                           obj.policy.version, orchestrator)
