"""The admin's object history ("History" on an object's page: Django's ``LogEntry``) for changes made outside the
admin's own forms: promotions, rollbacks, protocol changes and review imports, so that a curriculum's or a version's
history says who changed what, and why."""
from __future__ import annotations

from collections.abc import Iterable

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import models

__all__ = ["ADDITION", "CHANGE", "record_change"]


def record_change(*, actor, objects: Iterable[models.Model], message: str, action_flag: int = CHANGE) -> list[LogEntry]:
    """One ``LogEntry`` per object in ``objects`` (saved model instances: a curriculum, a policy version) by
    ``actor``, with ``message`` (plain text, shown as is on the object's History page; at most the field's length is
    kept by the database's text column) and ``action_flag`` (``CHANGE`` by default, ``ADDITION`` for what was
    added). Nothing is written, and [] returned, when no user is known (``actor`` None or unsaved: a command, the
    API, a worker's periodic work): the history names who acted, and an entry without a user cannot be stored.
    Returns the entries written. Call it inside the transaction of the change it records."""
    if not getattr(actor, "pk", None):
        return []
    written = []
    for obj in objects:
        written.append(LogEntry.objects.log_actions(
            user_id=actor.pk, queryset=[obj], action_flag=action_flag, change_message=message, single_object=True,
        ))
    return written
