"""Student families: simulated learners, each family a class with its own documented memory law (NumPy only).

``FAMILIES`` maps a family's name to its cohort class: "builtin" (``builtin.Cohort``, the project's exponential
simulator), "fsrs6" (FSRS-6 with the ``fsrs`` package's defaults), "fitted" (FSRS-6 fitted to a curriculum:
needs ``students_like``), "actr" (ACT-R power-law forgetting, Pavlik & Anderson 2005), "hlr" (half-life
regression, Settles & Meeder 2016). All share the schedule, the dice and the random-stream discipline of
``base.StudentCohort``, so evaluation is paired within a family.
"""
from __future__ import annotations

from .actr import ActrCohort, ActrConfig
from .base import (ASSIGNMENT_STREAM, FAMILY_STREAM, HELD_OUT_DOMAIN, POLICY_STREAM, STUDENT_STREAM, TRAINING_DOMAIN,
                   ReviewOutcome, SimulatorConfig, StudentCohort, grade_from_recall)
from .builtin import Cohort
from .fsrs import Fsrs6Cohort, FsrsCohort, StudentsLike
from .hlr import HlrCohort, HlrConfig

BUILTIN = "builtin"
FITTED = "fitted"
FAMILIES: dict[str, type[StudentCohort]] = {
    BUILTIN: Cohort, "fsrs6": Fsrs6Cohort, FITTED: FsrsCohort, "actr": ActrCohort, "hlr": HlrCohort,
}

__all__ = [
    "ASSIGNMENT_STREAM", "BUILTIN", "FAMILIES", "FAMILY_STREAM", "FITTED", "HELD_OUT_DOMAIN", "POLICY_STREAM",
    "STUDENT_STREAM", "TRAINING_DOMAIN", "ActrCohort", "ActrConfig", "Cohort", "Fsrs6Cohort", "FsrsCohort",
    "HlrCohort", "HlrConfig", "ReviewOutcome", "SimulatorConfig", "StudentCohort", "StudentsLike",
    "grade_from_recall", "make_cohort", "parse_families",
]


def parse_families(text: str | list[str] | tuple[str, ...] | None, *, field: str = "families") -> tuple[str, ...]:
    """Family names from "builtin,fsrs6,actr,hlr" (or a sequence of names): stripped, in order, without repeats.
    None or "" -> ("builtin",). ValueError "FIELD: unknown student family 'X' (expected ...)" for a name not in
    FAMILIES."""
    if text is None:
        return (BUILTIN,)
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    if not names:
        return (BUILTIN,)
    for name in names:
        if name not in FAMILIES:
            raise ValueError(f"{field}: unknown student family {name!r} (expected some of {', '.join(FAMILIES)})")
    return tuple(dict.fromkeys(names))


def make_cohort(*, family: str | None = None, students_like: StudentsLike | None = None, **kwargs) -> StudentCohort:
    """A cohort of one family; kwargs as ``StudentCohort``'s (num_students, num_concepts, interactions, seed,
    held_out, config). ``family`` None: "fitted" when ``students_like`` is given, else "builtin" (the simulator's
    older call). "fitted" needs ``students_like``: ValueError naming it otherwise; ValueError for an unknown
    family."""
    if family is None:
        family = BUILTIN if students_like is None else FITTED
    parse_families([family], field="family")
    if family == FITTED:
        if students_like is None:
            raise ValueError("family 'fitted': needs students_like (FSRS-6 fitted to a curriculum's log)")
        return FsrsCohort(students=students_like, **kwargs)
    return FAMILIES[family](**kwargs)
