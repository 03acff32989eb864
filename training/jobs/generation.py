"""The synthetic generation job: a simulated cohort practising the curriculum under a mix of behaviour
policies -> ReviewLog rows, bulk-written all or nothing: on PostgreSQL in one transaction, which also records the
``succeeded`` status; on SQLite a chunk at a time (curriculum/reviews/chunked.py), so that the heartbeat, its progress
and an operator's cancel get in between chunks, the last chunk and the ``succeeded`` status committing together, and
what the job wrote (its reviews and learners) deleted again when it stops without succeeding."""
from __future__ import annotations

import numpy as np

from curriculum.models import Concept, Curriculum, ReviewLog

from ..models import SyntheticGenerationJob
from ..rl.cpu_threads import AUTO
from curriculum.reviews.bulk import create_learners, write_reviews
from curriculum.reviews.chunked import ChunkedWrite
from .lifecycle import launch_job
from .partial_work import cohort_external_ids, discard_generation
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
    """Simulate the cohort and write its reviews, all or nothing (see the module docstring)."""
    return execute(SyntheticGenerationJob, job_id=job_id, worker=worker, work=_generate)


def _generate(run: JobRun) -> None:
    from ..rl.simulator import generate_logs

    job: SyntheticGenerationJob = run.job  # type: ignore[assignment]
    concept_ids = np.array(
        Concept.objects.filter(curriculum=job.curriculum).order_by("position").values_list("id", flat=True), dtype=np.int64
    )
    total = job.num_users * job.interactions
    # generate_logs says nothing until the whole cohort is simulated (its parts are at least MIN_REVIEWS_PER_PROCESS
    # reviews, and in a Celery prefork child one part in this process): a stage without counts, not a stuck 0 / N
    run.report(phase="simulating the cohort", step=0, steps=0)
    logs = generate_logs(
        num_users=job.num_users, interactions=job.interactions, num_concepts=len(concept_ids), seed=job.seed,
        policy_mix=job.policy_mix or None, processes=AUTO,  # one per core; in this process when daemonic (prefork)
    )
    run.check()
    run.report(phase="writing reviews", step=0, steps=total)

    def undo() -> None:  # SQLite: the committed chunks (PostgreSQL rolls its one transaction back)
        run.report(phase="removing the reviews written")
        discard_generation(job)

    external_ids = cohort_external_ids(job)
    try:
        with ChunkedWrite(undo=undo, guard=run.confirm_running, what=f"the reviews of batch {job.batch_tag}") as write:
            per_chunk = write.rows or max(len(external_ids), 1)
            parts = []
            for start in range(0, len(external_ids), per_chunk):
                with write.chunk():
                    parts.append(create_learners(external_ids=external_ids[start:start + per_chunk]))
            learners = np.concatenate(parts)
            write_reviews(
                curriculum_id=job.curriculum_id, learner_ids=learners[logs.learner],
                concept_ids=concept_ids[logs.concept], t=logs.t, correct=logs.correct, grade=logs.grade,
                response_time_ms=logs.response_time_ms, source=ReviewLog.Source.SYNTHETIC, batch=job.batch_tag,
                chunks=write, on_rows=lambda rows: (run.report(step=rows, rows_written=rows), run.check()),
                before_commit=lambda rows: run.finish(rows_written=rows, step=rows),
            )
    except BaseException:
        run.report(rows_written=0)  # nothing was kept (PostgreSQL rolled back; SQLite's undo deleted it)
        raise
