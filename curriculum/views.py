"""Admin-side views of the curriculum domain: artifact downloads (the orchestrator page joins them later)."""
from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404

from .models import PolicyModel
from .services import artifact_storage


@staff_member_required
def policy_artifact(request, pk: int, name: str):
    """Stream one artifact file of a policy version to a staff member allowed to view versions."""
    if not request.user.has_perm("curriculum.view_policymodel"):
        raise PermissionDenied
    policy = get_object_or_404(PolicyModel, pk=pk)
    entry = policy.artifacts.get(name)
    if not entry or not artifact_storage().exists(entry["path"]):
        raise Http404(f"{name} is not stored for {policy}")
    return FileResponse(artifact_storage().open(entry["path"], "rb"), as_attachment=True, filename=name)
