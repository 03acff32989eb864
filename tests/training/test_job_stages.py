"""The stage-aware progress bar (training/jobs/stages.py): a stage at 100% is not a finished job."""
from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from training.jobs import job_status
from training.jobs.stages import job_stages, stage_weight
from training.models import (
    ProtocolEvaluationJob, ReviewImportJob, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob,
)

pytestmark = pytest.mark.django_db


def test_a_run_that_has_extracted_every_review_is_not_at_100_percent(admin_client, curriculum):
    run = TrainingRun.objects.create(curriculum=curriculum, status="running", data_source="review_log",
                                     heartbeat_at=timezone.now(), phase="extracting trajectories", step=500, steps=500)
    status = job_status(job=run)
    stages = status["stages"]
    assert status["percent"] == 100.0  # the phase's own count is complete...
    # the log's second pass: the encoder was fitted on the first (training.pipeline.build_dataset_from_reviews)
    assert status["stage"] == stages.index("extracting trajectories") + 1 == 4 and len(stages) == 9
    weights = [stage_weight(stage) for stage in stages]
    assert status["bar"] == pytest.approx(100 * sum(weights[:4]) / sum(weights), abs=0.1)  # ...training is ahead
    assert status["bar"] < 15
    assert status["bar_label"] == "stage 4 of 9: extracting trajectories, 100% (500 / 500)"
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    bar = page.split('id="job-progress-bar"')[1].split(">")[0]
    assert f'value="{status["bar"]}"' in bar and 'value="100' not in bar
    assert "stage 4 of 9: extracting trajectories" in page


def test_the_bar_reaches_100_only_when_the_job_succeeded(curriculum):
    run = TrainingRun.objects.create(curriculum=curriculum, status="running", phase="registering the candidate version",
                                     step=1, steps=1)
    assert job_status(job=run)["bar"] == 99.9
    run.status = "succeeded"
    assert (job_status(job=run)["bar"], job_status(job=run)["bar_label"]) == (100.0, "done")
    run.status, run.phase = "queued", ""
    assert (job_status(job=run)["bar"], job_status(job=run)["stage"]) == (0.0, None)
    run.status, run.phase = "running", "a phase no stage list knows"
    assert (job_status(job=run)["bar"], job_status(job=run)["bar_label"]) == (None, "a phase no stage list knows")


def test_the_stages_are_the_phases_the_job_bodies_report(curriculum):
    """Each stage name appears in the code that reports it (a renamed phase would leave the bar indeterminate)."""
    import inspect

    from curriculum.reviews.importers import service as import_service
    from training import pipeline, services
    from training import protocol_evaluation as evaluation_under_protocol
    from training.jobs import extraction, generation, protocol_evaluation, review_import, training_run

    sources = "".join(inspect.getsource(m) for m in (pipeline, services, extraction, generation, review_import,
                                                       training_run, import_service, protocol_evaluation,
                                                       evaluation_under_protocol))
    jobs = [TrainingRun(curriculum=curriculum, data_source=source) for source in TrainingRun.DataSource.values]
    jobs.append(TrainingRun(curriculum=curriculum, data_source="synthetic", policy_gradient_rounds=3))
    jobs += [SyntheticGenerationJob(curriculum=curriculum), TrajectoryExtractionJob(curriculum=curriculum),
             ReviewImportJob(curriculum=curriculum), ProtocolEvaluationJob(curriculum=curriculum)]
    for job in jobs:
        for stage in job_stages(job):
            assert f'"{stage}"' in sources, f"{type(job).__name__}: no job body reports the phase {stage!r}"
    assert services.EVALUATING_ACTIVE in job_stages(jobs[0]) and services.REGISTERING in job_stages(jobs[0])


def test_a_run_with_policy_gradient_rounds_has_their_stage_after_the_offline_training(curriculum):
    plain = job_stages(TrainingRun(curriculum=curriculum, data_source="synthetic"))
    tuned = job_stages(TrainingRun(curriculum=curriculum, data_source="synthetic", policy_gradient_rounds=3))
    assert "policy gradient" not in plain
    assert tuned[tuned.index("training") + 1] == "policy gradient" and len(tuned) == len(plain) + 1
    assert stage_weight("policy gradient") > stage_weight("training")  # 3x the offline training on 2 CPU cores


def test_a_protocol_evaluation_fills_its_own_stages(curriculum):
    from training.jobs.stages import stage_bar

    job = ProtocolEvaluationJob(curriculum=curriculum, status="running", phase="evaluating", step=1, steps=4)
    status = stage_bar(job)
    weights = [stage_weight(stage) for stage in job_stages(job)]
    assert (status["stage"], status["bar"]) == (2, round(100 * (weights[0] + weights[1] / 4) / sum(weights), 1))
    assert status["bar_label"] == "stage 2 of 3: evaluating, 25% (1 / 4)"


def test_a_job_cancelled_before_it_started_says_cancelled_once(admin_client, curriculum):
    from training.jobs import cancel_job

    run = TrainingRun.objects.create(curriculum=curriculum)
    assert cancel_job(job=run) == "cancelled"
    run.refresh_from_db()
    label = job_status(job=run)["bar_label"]
    assert label == "cancelled (before it started)" and label.count("cancelled") == 1
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "cancelled (cancelled" not in page and "cancelled (before it started)" in page
    # a row cancelled before the phase stopped repeating the status reads the same once
    run.phase = "cancelled before it started"
    assert job_status(job=run)["bar_label"] == "cancelled before it started"
    run.status, run.phase = "failed", "training"
    assert job_status(job=run)["bar_label"] == "failed (training)"


@pytest.mark.parametrize("source", TrainingRun.DataSource.values)
def test_a_runs_training_stage_is_most_of_its_bar_and_it_never_reaches_100_before_success(curriculum, source):
    run = TrainingRun(curriculum=curriculum, data_source=source, status="running", phase="training", steps=200)
    start = job_status(job=run)["bar"]
    run.step = 100
    half = job_status(job=run)["bar"]
    run.step = 200
    end = job_status(job=run)["bar"]
    assert start < half < end and end - start >= 40  # an equal share per stage gave training a ninth (11%)
    assert half == pytest.approx((start + end) / 2, abs=0.1)  # filled by the job's own progress within the stage
    bars = []
    for stage in job_stages(run):
        run.phase, run.step, run.steps = stage, 1, 1
        bars.append(job_status(job=run)["bar"])
    assert bars == sorted(bars) and max(bars) == 99.9


def test_every_weighted_stage_is_a_stage_some_job_goes_through(curriculum):
    from training.jobs.stages import STAGE_WEIGHTS

    jobs = [TrainingRun(curriculum=curriculum, data_source=source) for source in TrainingRun.DataSource.values]
    jobs.append(TrainingRun(curriculum=curriculum, data_source="synthetic", policy_gradient_rounds=3))
    jobs += [model(curriculum=curriculum) for model in (SyntheticGenerationJob, TrajectoryExtractionJob,
                                                        ReviewImportJob, ProtocolEvaluationJob)]
    known = {stage for job in jobs for stage in job_stages(job)}
    assert set(STAGE_WEIGHTS) <= known and all(weight > 0 for weight in STAGE_WEIGHTS.values())


def test_a_protocol_evaluation_with_a_version_active_has_no_fallback_stage_and_fills_its_bar(curriculum, make_policy):
    """The fallback is evaluated only while no version is active (training.protocol_evaluation): with one active
    its stage is not on the bar, so evaluating fills the bar instead of stopping at three quarters and jumping to
    done; without one the fallback's stage follows evaluating and the bar reaches the end only through it."""
    from curriculum.services import promote_policy
    from training.jobs.stages import FALLBACK_STAGE, stage_bar

    job = ProtocolEvaluationJob(curriculum=curriculum, status="running", phase="evaluating", step=4, steps=4)
    assert job_stages(job)[-1] == FALLBACK_STAGE  # nothing active: the fallback is evaluated after the version
    weights = [stage_weight(stage) for stage in job_stages(job)]
    assert stage_bar(job)["bar"] == round(100 * sum(weights[:2]) / sum(weights), 1) < 80
    assert stage_bar(job)["bar_label"] == "stage 2 of 3: evaluating, 100% (4 / 4)"

    promote_policy(policy=make_policy(curriculum, recall=0.6), force=True, reason="test")
    assert job_stages(job) == ("copying the artifacts", "evaluating")
    job.step = 2
    half = stage_bar(job)
    job.step = 4
    full = stage_bar(job)
    assert (half["stage"], half["bar_label"]) == (2, "stage 2 of 2: evaluating, 50% (2 / 4)")
    assert half["bar"] == pytest.approx((weights[0] + weights[1] / 2) / (weights[0] + weights[1]) * 100, abs=0.1)
    assert full["bar"] == 99.9  # the whole bar but done: no jump from three quarters
    job.status = "succeeded"
    assert (stage_bar(job)["bar"], stage_bar(job)["stages"]) == (100.0, ["copying the artifacts", "evaluating"])

    # a job that reported the fallback's stage keeps it, whatever became active since
    job.status, job.phase, job.step, job.steps = "running", FALLBACK_STAGE, 0, 1
    assert job_stages(job)[-1] == FALLBACK_STAGE and stage_bar(job)["stage"] == 3


def test_a_protocol_evaluation_of_a_version_over_another_deck_than_the_active_one_has_the_fallback_stage(
        make_curriculum, make_policy):
    """The gate holds a version over more concepts than the active one to the fallback over its own
    concepts (curriculum.services.held_to_fallback), so its evaluation evaluates the fallback too: on the bar."""
    from curriculum.models import PolicyModel
    from curriculum.services import promote_policy
    from training.jobs.stages import FALLBACK_STAGE

    curriculum = make_curriculum("decks", concepts=5)
    active = make_policy(curriculum, recall=0.6)
    PolicyModel.objects.filter(pk=active.pk).update(config={"concept_keys": ["c0", "c1", "c2"]})
    promote_policy(policy=active, force=True, reason="three concepts")
    wider = make_policy(curriculum, recall=0.5)
    PolicyModel.objects.filter(pk=wider.pk).update(config={"concept_keys": [f"c{i}" for i in range(5)]})
    same = make_policy(curriculum, recall=0.5)
    PolicyModel.objects.filter(pk=same.pk).update(config={"concept_keys": ["c0", "c1", "c2"]})
    job = ProtocolEvaluationJob(curriculum=curriculum, status="running", phase="evaluating", step=1, steps=4)
    for policy, last in ((wider, FALLBACK_STAGE), (same, "evaluating"), (active, "evaluating")):
        job.policy = PolicyModel.objects.get(pk=policy.pk)
        assert job_stages(job)[-1] == last, policy


def test_the_job_lists_show_the_whole_jobs_bar_which_does_not_start_again_at_each_stage(admin_client, curriculum):
    # The list's column showed the phase's own percent: 100% at the end of the data, then 0% as training began.
    extracted = TrainingRun.objects.create(curriculum=curriculum, status="running", data_source="review_log",
                                           phase="extracting trajectories", step=500, steps=500)
    training = TrainingRun.objects.create(curriculum=curriculum, status="running", data_source="review_log",
                                          phase="training", step=0, steps=400)
    unknown = TrainingRun.objects.create(curriculum=curriculum, status="running", phase="starting")
    done = TrainingRun.objects.create(curriculum=curriculum, status="succeeded")
    page = admin_client.get(reverse("admin:training_trainingrun_changelist")).content.decode()
    rows = {run.pk: page.split(f'/admin/training/trainingrun/{run.pk}/change/"', 1)[1].split("</tr>", 1)[0]
            for run in (extracted, training, unknown, done)}
    for run in (extracted, training):
        bar = job_status(job=run)["bar"]
        assert f'<progress max="100" value="{bar}" style="width: 4em"></progress> {bar}%' in rows[run.pk]
    assert job_status(job=extracted)["bar"] == job_status(job=training)["bar"] > 0  # not 100%, then 0%
    assert '<progress max="100" style="width: 4em"></progress>' in rows[unknown.pk]  # no place yet: a moving bar
    assert 'value="100.0"' in rows[done.pk]
