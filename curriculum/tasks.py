"""Celery tasks of the curriculum app (the training jobs' tasks are in training/tasks.py)."""
from __future__ import annotations

from celery import shared_task

REENCODE_TASK = "curriculum.tasks.reencode_learner_states"


@shared_task(name=REENCODE_TASK)
def reencode_learner_states(curriculum_id: int) -> int:
    """After a promotion or rollback: store the curriculum's learner states in the new active encoding."""
    from .learner_states import reencode_states

    return reencode_states(curriculum_id=curriculum_id)
