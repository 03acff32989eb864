"""The review import job: an uploaded review-log file, kept in the artifacts storage under review-imports/ (the
storage web and workers share, so the web process that took the upload and the worker may be on different hosts) -> the curriculum's reviews, all or nothing, through
curriculum.reviews.importers.service (which takes no lock a live review post waits on). A dry run validates and
counts only. The upload is deleted once an import succeeds and no other unfinished job needs it; a failed job
keeps it, so that it can be retried."""
from __future__ import annotations

import dataclasses
import os

from django.core.files.base import File
from django.db import transaction

from curriculum.history import record_change
from curriculum.models import Curriculum
from curriculum.services import artifact_storage
from curriculum.storage import saving_together
from curriculum.reviews.chunked import PartialWriteLeft
from curriculum.reviews.importers.service import ImportFileError, import_review_file

from ..models import Job, ReviewImportJob
from .lifecycle import JobCancelled, launch_job
from .partial_work import import_progress_record
from .runner import JobRun, execute

UPLOAD_FOLDER = "review-imports"
# A stored upload's file name, in UTF-8 bytes: a file system's limit is 255 bytes (NAME_MAX; 92 Japanese characters
# are 268), and a name already taken gets "_" and 7 characters more (the storage's free-name rule).
UPLOAD_NAME_MAX_BYTES = 200


def upload_name(filename: str) -> str:
    """The storage name an upload named ``filename`` is saved under: review-imports/ and the name, its stem cut (on
    a character boundary) so that the name is at most UPLOAD_NAME_MAX_BYTES of UTF-8, its extension kept. The job
    keeps the name as uploaded (ReviewImportJob.filename): that is the one its messages and the batch use."""
    name = os.path.basename(filename.replace("\\", "/"))
    if name in ("", ".", ".."):
        name = "upload"
    stem, extension = os.path.splitext(name)
    if len(extension.encode()) > 16:  # not an extension: a dot in a long name
        stem, extension = name, ""
    room = UPLOAD_NAME_MAX_BYTES - len(extension.encode())
    stem = stem.encode()[:room].decode(errors="ignore") or "upload"
    return f"{UPLOAD_FOLDER}/{stem}{extension}"


def store_upload(*, fileobj: File, filename: str) -> str:
    """Save an uploaded file in the artifacts storage; returns its storage name (upload_name, or a free one like it)."""
    return artifact_storage().save(upload_name(filename), fileobj)


def launch_uploaded_import(*, curriculum: Curriculum, fileobj: File, filename: str, **options) -> ReviewImportJob:
    """Store an uploaded file under review-imports/ and launch its import (``launch_review_import`` with ``options``):
    stored whole, then recorded; when the launch is refused (ValidationError) the stored file is removed again.
    Raises curriculum.storage.StorageFull, with nothing stored, when the artifact storage has no room for it."""
    with saving_together(artifact_storage()) as save:
        upload = save(upload_name(filename), fileobj)
        return launch_review_import(curriculum=curriculum, upload=upload, filename=filename, size=fileobj.size,
                                    **options)


def launch_review_import(
    *, curriculum: Curriculum, upload: str, filename: str, size: int = 0, format: str = "", learner: str = "",
    dry_run: bool = False, created_by=None,
) -> ReviewImportJob:
    """Save and enqueue (on commit) an import of the stored file ``upload`` (an artifacts-storage name)."""
    return launch_job(job=ReviewImportJob(
        curriculum=curriculum, upload=upload, filename=filename, size=size, format=format or "", learner=learner or "",
        dry_run=dry_run, created_by=created_by,
    ))


def run_review_import(*, job_id: int, worker: str = "") -> ReviewImportJob | None:
    """Validate (and unless a dry run, store) the job's file; the counts are the job's ``result``."""
    return execute(ReviewImportJob, job_id=job_id, worker=worker, work=_import)


def _import(run: JobRun) -> None:
    job: ReviewImportJob = run.job  # type: ignore[assignment]
    storage = artifact_storage()
    if not storage.exists(job.upload):
        raise ImportFileError(job.filename, f"the uploaded file is no longer stored ({job.upload}): upload it again")
    total = job.size or storage.size(job.upload)
    passes = 1 if job.dry_run else 2
    run.report(phase="validating", steps=passes * total)

    def progress(phase: str, done: int, _total: int | None) -> None:
        offset = total if phase != "validating" else 0  # the second pass (storing) fills the second half
        run.report(phase=phase, step=min(offset + done, passes * total))
        if phase in ("validating", "storing"):  # afterwards the reviews are committed: too late to cancel
            # Read the flag here too, without waiting for the heartbeat to bring it (a read: WAL lets SQLite's
            # readers in while a writer holds the lock).
            if ReviewImportJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
                raise JobCancelled(f"{job} was cancelled")
            run.check()  # raises JobCancelled: nothing of the import stays stored (see import_review_file)

    def record_stored(batch: str, id_ranges: list[list[int]]) -> None:
        """SQLite, in the transaction of each batch that commits: what is stored so far, on the job's row (the stale
        check deletes it if the worker dies: partial_work.discard_import); JobLost, rolling the batch back, once the
        job is no longer running."""
        if not ReviewImportJob.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(
                result=import_progress_record(batch=batch, id_ranges=id_ranges)):
            run.confirm_running()

    try:
        with storage.open(job.upload, "rb") as fh:
            result = import_review_file(
                fileobj=fh, filename=job.filename, curriculum_key=job.curriculum.key, format=job.format or None,
                learner=job.learner or None, dry_run=job.dry_run, on_progress=progress, on_chunk_stored=record_stored,
            )
    except PartialWriteLeft:
        raise  # the record of what is still stored stays on the job
    except BaseException:
        run.report(result={})  # what the import had stored is deleted again
        raise
    with transaction.atomic():  # the job's result and the curriculum's history entry together
        run.finish(result=dataclasses.asdict(result) | {"new_concepts": list(result.new_concepts[:1000])})
        if not job.dry_run:
            record_change(actor=job.created_by, objects=[job.curriculum], message=(
                f"Imported {job.filename} ({result.format}, review import job #{job.pk}): {result.created} review(s) "
                f"stored, {result.duplicates} already stored, {result.skipped} skipped; {result.learners} learner(s), "
                f"{result.concepts_created} new concept(s)."))
    if not job.dry_run:
        _forget_upload(job)


def _forget_upload(job: ReviewImportJob) -> None:
    others = ReviewImportJob.objects.filter(upload=job.upload).exclude(pk=job.pk).exclude(status__in=Job.FINISHED)
    if not others.exists():
        artifact_storage().delete(job.upload)
