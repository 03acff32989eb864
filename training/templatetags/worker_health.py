"""The admin index's worker-health panel: ``{% load worker_health %}{% worker_health_panel %}``."""
from __future__ import annotations

from django import template
from django.urls import reverse

from ..workers import format_duration, worker_health

register = template.Library()


@register.inclusion_tag("admin/training/worker_health.html", takes_context=True)
def worker_health_panel(context) -> dict:
    """Workers, queues and running jobs (training/workers.py); asks the broker with short timeouts, the workers'
    queues at most every LISTENERS_CACHE_SECONDS (their broadcast waits out its timeout)."""
    health = worker_health(cached=True)
    return {
        "health": health,
        "running": [
            (r, format_duration(r.runtime_s), reverse(f"admin:training_{r.job._meta.model_name}_change", args=[r.job.pk]))
            for r in health.running
        ],
        "request": context.get("request"),
    }


register.filter("duration", format_duration)
