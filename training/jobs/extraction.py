"""The trajectory extraction job: a curriculum's ReviewLog -> a trajectory dataset saved (through the artifacts
storage) as the curriculum's next dataset version, with its statistics: both files whole and recorded, or neither
(curriculum.storage). Read it back with training.pipeline.load_extracted_dataset."""
from __future__ import annotations

import json
import tempfile

from django.core.files.base import ContentFile, File
from django.db import transaction
from django.db.models import Max

from curriculum.models import Curriculum, ReviewLog
from curriculum.services import artifact_storage
from curriculum.storage import remove_leftovers, saving_together

from ..models import TrajectoryExtractionJob
from .lifecycle import launch_job
from .runner import JobRun, execute


def launch_trajectory_extraction(*, curriculum: Curriculum, created_by=None) -> TrajectoryExtractionJob:
    """Validate, save and enqueue (on commit) an extraction job; ValidationError when the curriculum has no reviews."""
    return launch_job(job=TrajectoryExtractionJob(curriculum=curriculum, created_by=created_by))


def run_trajectory_extraction(*, job_id: int, worker: str = "") -> TrajectoryExtractionJob | None:
    """ReviewLog -> a trajectory dataset saved as the curriculum's next dataset version, with its statistics."""
    return execute(TrajectoryExtractionJob, job_id=job_id, worker=worker, work=_extract)


def _extract(run: JobRun) -> None:
    from .. import pipeline
    from ..rl.dataset_file import save_dataset
    from ..rl.dataset_statistics import dataset_statistics

    job: TrajectoryExtractionJob = run.job  # type: ignore[assignment]
    total = ReviewLog.objects.filter(curriculum=job.curriculum).count()
    run.report(phase="reading reviews", steps=total)

    def progress(stage: str, done: int, total: int, info: dict | None = None) -> None:
        # the log is read twice (fitting the encoder, then extracting): the reviews read so far never go back
        run.report(phase=stage, step=done, steps=max(total, done), rows_read=max(job.rows_read, done))
        run.check()

    dataset = pipeline.build_dataset_from_reviews(curriculum=job.curriculum, on_progress=progress)
    run.check()
    run.report(phase="saving the dataset")
    statistics = dataset_statistics(dataset)
    storage = artifact_storage()
    # Through a temporary file, not memory: the dataset may be most of the worker's memory already.
    with tempfile.TemporaryFile(suffix=".npz") as fh:
        save_dataset(dataset, fh)
        del dataset
        fh.seek(0)
        with transaction.atomic():
            Curriculum.objects.select_for_update().get(pk=job.curriculum_id)  # dataset versions are numbered under it
            version = (
                TrajectoryExtractionJob.objects.filter(curriculum_id=job.curriculum_id).aggregate(v=Max("version"))["v"] or 0
            ) + 1
            folder = f"datasets/{job.curriculum.key}/v{version}"
            remove_leftovers(storage, folder)  # an extraction that failed after storing; no succeeded job names it
            with saving_together(storage) as save:  # stored whole, then recorded; neither left when either fails
                path = save(f"{folder}/dataset.npz", File(fh, name="dataset.npz"))
                save(f"{folder}/statistics.json", ContentFile(json.dumps(statistics, indent=2).encode()))
                run.finish(version=version, dataset_path=path, statistics=statistics, rows_read=total, step=total)
