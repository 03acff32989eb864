"""A training run's data stage as a worker runs it (the admin's launch -> the Celery task's body -> the pipeline), up
to the trainer, which is replaced by a stand-in: the phases it reports fill the job's bar in order (never back, never
without a place on it), and the data stage's recorded seconds cover what getting the run's data took."""
from __future__ import annotations

import datetime as dt

import pytest

from training import jobs, pipeline, tasks
from training.jobs import lifecycle
from training.jobs.runner import JobRun
from training.jobs.stages import job_stages, stage_bar
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)  # the jobs run here with their heartbeat threads

RUN = dict(num_users=12, interactions=10, concepts=5, epochs=1, batch_size=16, eval_students=30, no_cuda=True)


class StopBeforeTraining(Exception):
    """The stand-in trainer's answer: the data stage is done, nothing is trained."""


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.CRL_JOB_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: None)  # these tests call the tasks themselves


@pytest.fixture
def trainer(monkeypatch):
    """The stage_seconds each call of pipeline.train_and_export was given; it then raises StopBeforeTraining."""
    calls = []

    def stand_in(**kwargs):
        calls.append(kwargs["stage_seconds"])
        raise StopBeforeTraining("stopped before training")

    monkeypatch.setattr(pipeline, "train_and_export", stand_in)
    return calls


@pytest.fixture
def reports(monkeypatch):
    """Per job (its model and id), what its page showed after each progress report: (phase, rows read, bar)."""
    seen: dict[tuple[type, int], list[tuple[str, int, float | None]]] = {}
    real = JobRun.report

    def report(self, **fields):
        real(self, **fields)
        if "phase" in fields:
            seen.setdefault((type(self.job), self.job.pk), []).append(
                (self.job.phase, getattr(self.job, "rows_read", 0), stage_bar(self.job)["bar"]))

    monkeypatch.setattr(JobRun, "report", report)
    return seen


def extracted_dataset(curriculum):
    generation = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=12, interactions=10, seed=3)
    tasks.run_synthetic_generation(generation.pk)
    extraction = jobs.launch_trajectory_extraction(curriculum=curriculum)
    tasks.run_trajectory_extraction(extraction.pk)
    extraction.refresh_from_db()
    assert extraction.status == "succeeded", extraction.error
    return extraction


def run_until_training(curriculum, **parameters) -> TrainingRun:
    run = jobs.launch_training_run(curriculum=curriculum, **{**RUN, **parameters})
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "stopped before training" in run.error, run.error
    return run


@pytest.mark.parametrize("source", TrainingRun.DataSource.values)
def test_the_data_stages_fill_the_runs_bar_in_order(curriculum, trainer, reports, source):
    # A review-log run went back (its stages listed extracting before fitting the encoder, the pipeline's order the
    # other way round) and a synthetic run's extraction, as a dataset's loading, had no place on the bar.
    dataset = extracted_dataset(curriculum) if source == "dataset" else None
    if source == "review_log":
        extracted_dataset(curriculum)  # its reviews
    run = run_until_training(curriculum, data_source=source, **({"dataset": dataset} if dataset else {}))
    shown = reports[TrainingRun, run.pk]
    phases = [phase for phase, _, _ in shown]
    assert set(phases) <= set(job_stages(run)), f"phases with no place on the bar: {set(phases) - set(job_stages(run))}"
    bars = [bar for _, _, bar in shown]
    assert bars == sorted(bars), list(zip(phases, bars))
    assert len(set(phases) - {"checking the space for the artifacts", "preparing the data"}) >= 1


def test_an_extraction_jobs_bar_and_reviews_read_never_go_back(curriculum, reports):
    extraction = extracted_dataset(curriculum)
    shown = reports[type(extraction), extraction.pk]
    assert {phase for phase, _, _ in shown} == set(job_stages(extraction))
    bars = [bar for _, _, bar in shown]
    rows = [read for _, read, _ in shown]
    assert bars == sorted(bars) and rows == sorted(rows), shown
    assert extraction.rows_read == 120


def test_a_run_on_an_extracted_dataset_records_the_extraction_in_its_data_stage(curriculum, trainer):
    # The run's data stage only loaded the dataset (0 s) while its extraction, the Celery task before it, had
    # taken 18 s: "data 0 s" on the run's page and in dt_lite_config.json's stage_seconds.
    dataset = extracted_dataset(curriculum)
    finished = dataset.finished_at
    type(dataset).objects.filter(pk=dataset.pk).update(started_at=finished - dt.timedelta(seconds=18))
    dataset.refresh_from_db()
    run_until_training(curriculum, dataset=dataset)
    assert 18.0 <= trainer[0]["extraction"] < 30.0 and trainer[0]["data"] < 18.0
    assert list(trainer[0]) == ["extraction", "data"]  # in the order they happened

    # the other sources get their data within the run: their own time, no extraction stage
    run_until_training(curriculum, data_source="review_log")
    assert trainer[1]["data"] < 18.0 and "extraction" not in trainer[1]
