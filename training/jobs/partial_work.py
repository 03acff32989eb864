"""What a synthetic generation or a review import that did not succeed had committed, removed. On SQLite their reviews
commit a chunk at a time (curriculum/reviews/chunked.py): the worker deletes them when the job stops (cancelled,
failed, lost), and the stale check (lifecycle.mark_stale_jobs, fail_lost_job) when its worker died mid-write. On
PostgreSQL they are written in one transaction and there is nothing to remove.

A generation's reviews carry its own batch tag (``synthetic-<job id>``) and its learners its own external ids
(cohort_external_ids). An import's batch tag (``import:<hash of the file's name and head>``) is shared by every import
of a file with that name and head, so an import job records, in each chunk's transaction, the ids of the reviews it
has stored so far (``result["stored_review_ids"]``, ``[first, last]`` ranges, while it runs; its counts replace them
when it succeeds).
"""
from __future__ import annotations

import logging

from django.db.models import Exists, OuterRef

from curriculum.models import Learner, ReviewLog
from curriculum.reviews.chunked import delete_reviews

from ..models import Job, ReviewImportJob, SyntheticGenerationJob

log = logging.getLogger(__name__)

STORED_REVIEW_IDS = "stored_review_ids"  # the key of a running import's result that holds them


def cohort_external_ids(job: SyntheticGenerationJob) -> list[str]:
    """The external ids of the learners a generation job creates, one per simulated learner."""
    return [f"syn{job.pk}-u{i}" for i in range(job.num_users)]


def discard_generation(job: SyntheticGenerationJob) -> int:
    """Delete the job's reviews (its batch), then the learners it created that have no review left. Returns how many
    reviews were deleted."""
    deleted = delete_reviews(batch=job.batch_tag)
    external_ids = cohort_external_ids(job)
    for start in range(0, len(external_ids), 1000):
        Learner.objects.filter(external_id__in=external_ids[start:start + 1000]).exclude(
            Exists(ReviewLog.objects.filter(learner=OuterRef("pk")))
        ).delete()
    return deleted


def import_progress_record(*, batch: str, id_ranges: list[list[int]]) -> dict:
    """A running import's ``result`` while its chunks commit: its batch and the ids of the reviews stored so far."""
    return {"batch": batch, STORED_REVIEW_IDS: id_ranges}


def discard_import(job: ReviewImportJob) -> int:
    """Delete the reviews a running import recorded as stored (none once it succeeded: its counts replaced the
    record) and clear the record. Returns how many were deleted."""
    record = job.result or {}
    if not record.get(STORED_REVIEW_IDS):
        return 0
    deleted = delete_reviews(batch=record["batch"], id_ranges=record[STORED_REVIEW_IDS])
    ReviewImportJob.objects.filter(pk=job.pk).exclude(status=Job.Status.SUCCEEDED).update(result={})
    job.result = {}
    return deleted


def discard_partial_work(model: type[Job], pk: int) -> int:
    """For the stale check, after it marked the job failed: remove what the job had committed (a generation's or an
    import's reviews; nothing for other jobs). Returns how many reviews were deleted."""
    if model not in (SyntheticGenerationJob, ReviewImportJob):
        return 0
    job = model.objects.filter(pk=pk).first()
    if job is None or job.status == Job.Status.SUCCEEDED:
        return 0
    deleted = discard_generation(job) if model is SyntheticGenerationJob else discard_import(job)
    if deleted:
        log.warning("%s: deleted the %d review(s) it had stored before its worker died", job, deleted)
    return deleted

