"""How the admin words things for an operator: times with seconds and zone, counts with their noun, and a
permission denial that names the missing permission."""
from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.utils import timezone


def format_when(value: dt.datetime | None) -> str:
    """A moment in the current time zone with seconds: ``2025-01-05 15:04:07 UTC``; None -> ``-``."""
    if value is None:
        return "-"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def count_noun(n: int, noun: str) -> str:
    """``n`` with thousands separators and ``noun`` in the singular or plural (plural by -s): "6,220 reviews",
    "1 concept"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def permission_denied(request, *, app_label: str, codename: str, doing: str) -> PermissionDenied:
    """The PermissionDenied to raise when ``request.user`` lacks ``app_label.codename``; its message (shown by
    templates/403.html) says what was refused, which permission is missing and who can grant it."""
    name = (Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            .values_list("name", flat=True).first()) or codename
    user = getattr(request, "user", None)
    who = getattr(user, "get_username", lambda: "you")()
    return PermissionDenied(
        f"{who} may not {doing}: the permission \u201c{name}\u201d ({app_label}.{codename}) is missing. "
        f"An administrator can grant it under Users or Groups."
    )


def protocol_columns(metrics) -> tuple[str, str]:
    """(DT mean, lift over random) of an evaluation for list columns: ``("0.6123", "+0.1042")``; "-" where absent."""
    from .evaluation_protocol import dt_mean, lift

    mean = dt_mean(metrics)
    over = lift(metrics).get("random")
    return ("-" if mean is None else f"{mean:.4f}", "-" if over is None else f"{over['mean']:+.4f}")
