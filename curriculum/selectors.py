"""Reads of the curriculum domain: the active policy, a curriculum's versions and history."""
from __future__ import annotations

from django.db.models import QuerySet

from .models import Curriculum, PolicyModel, PromotionEvent


def active_policy(*, curriculum: Curriculum) -> PolicyModel | None:
    return PolicyModel.objects.filter(curriculum=curriculum, status=PolicyModel.Status.ACTIVE).first()


def policy_versions(*, curriculum: Curriculum) -> QuerySet[PolicyModel]:
    return PolicyModel.objects.filter(curriculum=curriculum).order_by("-version")


def promotion_history(*, curriculum: Curriculum) -> QuerySet[PromotionEvent]:
    return PromotionEvent.objects.filter(curriculum=curriculum).select_related("actor").order_by("-at", "-id")
