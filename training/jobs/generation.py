"""The synthetic generation job: a simulated cohort practising the curriculum under a mix of behaviour
policies -> ReviewLog rows (bulk-written; all rows and the ``succeeded`` status commit together)."""
from __future__ import annotations

import numpy as np
from django.db import transaction

from curriculum.models import Concept, Curriculum, ReviewLog

from ..models import SyntheticGenerationJob
from ..rl.cpu_threads import AUTO
from curriculum.reviews.bulk import create_learners, write_reviews
from .lifecycle import launch_job
from .runner import JobRun, execute


def launch_synthetic_generation(
    *, curriculum: Curriculum, num_users: int, interactions: int, seed: int = 42,
    policy_mix: dict[str, float] | None = None, created_by=None,
) -> SyntheticGenerationJob:
    """Validate, save and enqueue (on commit) a generation job; ValidationError names a refused field."""
    return launch_job(job=SyntheticGenerationJob(
        curriculum=curriculum, num_users=num_users, interactions=interactions, seed=seed,
        policy_mix=policy_mix or {}, created_by=created_by,
    ))


def new_cohort_seed(*, job: SyntheticGenerationJob) -> int:
    """The seed a retry of a generation job takes unless the operator says otherwise: the old one + 1, so that the
    retry simulates new learners instead of adding a second, identical cohort to the review log."""
    return job.seed + 1


def run_synthetic_generation(*, job_id: int, worker: str = "") -> SyntheticGenerationJob | None:
    """Simulate the cohort and write its reviews; all rows and the ``succeeded`` status commit together."""
    return execute(SyntheticGenerationJob, job_id=job_id, worker=worker, work=_generate)


def _generate(run: JobRun) -> None:
    from ..rl.simulator import generate_logs

    job: SyntheticGenerationJob = run.job  # type: ignore[assignment]
    concept_ids = np.array(
        Concept.objects.filter(curriculum=job.curriculum).order_by("position").values_list("id", flat=True), dtype=np.int64
    )
    total = job.num_users * job.interactions
    run.report(phase="simulating the cohort", steps=total)
    logs = generate_logs(
        num_users=job.num_users, interactions=job.interactions, num_concepts=len(concept_ids), seed=job.seed,
        policy_mix=job.policy_mix or None, processes=AUTO,  # one per core; in this process when daemonic (prefork)
    )
    run.check()
    run.report(phase="writing reviews")
    with transaction.atomic():
        learners = create_learners(external_ids=[f"syn{job.pk}-u{i}" for i in range(job.num_users)])
        written = write_reviews(
            curriculum_id=job.curriculum_id, learner_ids=learners[logs.learner], concept_ids=concept_ids[logs.concept],
            t=logs.t, correct=logs.correct, grade=logs.grade, response_time_ms=logs.response_time_ms,
            source=ReviewLog.Source.SYNTHETIC, batch=job.batch_tag,
            on_rows=lambda rows: (run.report(step=rows, rows_written=rows), run.check()),
        )
        run.finish(rows_written=written, step=written)
