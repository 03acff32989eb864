"""The admin of protocol evaluation jobs (a version evaluated under its curriculum's protocol): launched from the
orchestrator's "Evaluate under the protocol", watched (live progress), cancelled and retried here."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from ..models import ProtocolEvaluationJob
from .console import JobAdmin


@admin.register(ProtocolEvaluationJob)
class ProtocolEvaluationJobAdmin(JobAdmin):
    list_display = ("__str__", "status", "progress", "phase", "created_by", "created", "duration")
    list_select_related = ("curriculum", "policy", "created_by")
    result_fields = ("dt_recall", "version_link")

    def add_view(self, request, form_url="", extra_context=None):
        self.message_user(request, 'Open the policy orchestrator and use "Evaluate under the protocol" on a version.',
                          messages.INFO)
        return HttpResponseRedirect(reverse("curriculum:orchestrator"))

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
