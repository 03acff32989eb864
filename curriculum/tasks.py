"""Celery tasks of the curriculum app (the training jobs' tasks are in training/tasks.py), and the worker-start
hook that catches up on re-encodings whose message never reached the broker."""
from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

REENCODE_TASK = "curriculum.tasks.reencode_learner_states"
REENCODE_LAGGING_TASK = "curriculum.tasks.reencode_lagging_learner_states"

# The periodic catch-up, for `celery -A crlsite beat` (CELERY_BEAT_SCHEDULE in the settings): a promotion whose
# re-encoding message was lost (broker down or hung at the time) is re-encoded within this many seconds.
REENCODE_LAGGING_EVERY_SECONDS = 300.0
BEAT_SCHEDULE = {
    "reencode-lagging-learner-states": {"task": REENCODE_LAGGING_TASK, "schedule": REENCODE_LAGGING_EVERY_SECONDS},
}


@shared_task(name=REENCODE_TASK)
def reencode_learner_states(curriculum_id: int) -> int:
    """After a promotion or rollback: store the curriculum's learner states in the new active encoding."""
    from .learner_state_rebuild import reencode_states

    return reencode_states(curriculum_id=curriculum_id)


@shared_task(name=REENCODE_LAGGING_TASK)
def reencode_lagging_learner_states() -> dict[int, int]:
    """Re-encode every curriculum whose stored learner states lag its active version; {curriculum id: rebuilt}."""
    from .learner_state_rebuild import reencode_states

    return {cid: reencode_states(curriculum_id=cid) for cid in curricula_with_lagging_states()}


def curricula_with_lagging_states() -> list[int]:
    """Ids of the curricula with a learner state last written before their active version was promoted.

    Such a state was encoded for an earlier version (every write since the promotion encodes for the active
    one; `reencode_states` rewrites what it re-encodes), so the curriculum's re-encoding did not run: its
    message was never published, or its worker died. Curricula with no active version are not listed (their
    states use the default encoding, which does not change).
    """
    from django.db.models import Exists, OuterRef

    from .models import LearnerState, PolicyModel

    lagging = LearnerState.objects.filter(curriculum_id=OuterRef("curriculum_id"), updated_at__lt=OuterRef("promoted_at"))
    active = PolicyModel.objects.filter(status=PolicyModel.Status.ACTIVE, promoted_at__isnull=False)
    return sorted(active.filter(Exists(lagging)).values_list("curriculum_id", flat=True))


@worker_ready.connect(dispatch_uid="curriculum.tasks.reencode_after_worker_start")
def reencode_after_worker_start(sender=None, **kwargs) -> None:
    """When a worker starts: queue the catch-up, so re-encodings lost while the broker was away run now."""
    from crlsite.celery import publish

    publish(REENCODE_LAGGING_TASK)
