"""The tasks run in this process (no broker): generation, extraction, training, and their guarantees:
one run per job under redelivery, one registered version per run, cancellation, failures recorded."""
from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from curriculum.models import Learner, PolicyModel, ReviewLog
from curriculum.reviews import bulk
from curriculum.services import artifact_storage, verify_policy_artifacts
from training import jobs, pipeline, tasks
from training.jobs import lifecycle
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)

TINY_RUN = dict(num_users=20, interactions=20, concepts=5, epochs=1, batch_size=16, eval_students=30, no_cuda=True)


@pytest.fixture(autouse=True)
def _quick_heartbeats_and_no_broker(settings, monkeypatch):
    settings.CRL_JOB_HEARTBEAT_SECONDS = 0.05  # cancel requests are seen within a few steps
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: None)  # these tests call the tasks themselves


def generate(curriculum, *, users: int = 6, interactions: int = 7):
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=users, interactions=interactions, seed=3)
    tasks.run_synthetic_generation(job.pk)
    job.refresh_from_db()
    return job


# --------------------------------------------------------------------------------------------- generation
def test_generation_writes_the_cohort_once_even_when_redelivered(curriculum):
    job = generate(curriculum)
    tasks.run_synthetic_generation(job.pk)  # the broker delivers it again
    job.refresh_from_db()
    assert (job.status, job.rows_written, job.attempts, job.progress_percent) == ("succeeded", 42, 1, 100.0)
    reviews = ReviewLog.objects.filter(batch=job.batch_tag)
    assert reviews.count() == 42
    assert set(reviews.values_list("source", flat=True)) == {"synthetic"}
    per_learner = reviews.values("learner").distinct().count()
    assert per_learner == 6
    assert set(reviews.values_list("grade", flat=True)) <= {1, 2, 3, 4}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_copy_and_bulk_create_store_the_same_reviews(curriculum):
    from training.rl.simulator import generate_logs

    logs = generate_logs(num_users=3, interactions=5, num_concepts=5, seed=1)
    concept_ids = np.array(curriculum.concepts.order_by("position").values_list("id", flat=True))
    stored = {}
    for method in ("copy", "bulk_create"):
        learners = bulk.create_learners(external_ids=[f"{method}-{i}" for i in range(3)])
        bulk.write_reviews(
            curriculum_id=curriculum.pk, learner_ids=learners[logs.learner], concept_ids=concept_ids[logs.concept],
            t=logs.t, correct=logs.correct, grade=logs.grade, response_time_ms=logs.response_time_ms,
            source="synthetic", batch=method, method=method,
        )
        stored[method] = [
            (r.concept_id, r.reviewed_at.timestamp(), r.correct, r.grade, r.response_time_ms)
            for r in ReviewLog.objects.filter(batch=method).order_by("learner__external_id", "reviewed_at")
        ]
    assert len(stored["copy"]) == 15
    for a, b in zip(stored["copy"], stored["bulk_create"]):
        assert a[0] == b[0] and a[2:] == b[2:] and abs(a[1] - b[1]) < 1e-5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
@pytest.mark.parametrize("check_keys_once", [True, False])
def test_copy_refuses_a_review_of_an_unknown_learner(curriculum, check_keys_once):
    from django.db import IntegrityError, transaction

    concept = curriculum.concepts.first()
    with pytest.raises(IntegrityError, match="learner_id"):
        with transaction.atomic():
            bulk.write_reviews(
                curriculum_id=curriculum.pk, learner_ids=np.array([10**9]), concept_ids=np.array([concept.pk]),
                t=np.array([1.7e9]), correct=np.array([True]), grade=np.array([3], dtype=np.int8),
                response_time_ms=np.array([900], dtype=np.int32), source="synthetic", batch="x", method="copy",
                check_keys_once=check_keys_once,
            )
    assert not ReviewLog.objects.exists()


def test_a_failed_generation_leaves_no_reviews_and_says_why(curriculum, monkeypatch):
    monkeypatch.setattr(bulk, "REVIEW_WRITE_ROWS", 10)
    calls = []
    real = bulk._bulk_create_block if connection.vendor != "postgresql" else bulk._copy_block

    def second_block_fails(**kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real(**kw)

    monkeypatch.setattr(bulk, "_bulk_create_block", second_block_fails)
    monkeypatch.setattr(bulk, "_copy_block", second_block_fails)
    job = generate(curriculum)
    assert job.status == "failed" and "RuntimeError: disk full" in job.error
    assert not ReviewLog.objects.exists() and not Learner.objects.exists()  # all or nothing
    assert job.rows_written == 0  # what it says it kept (it showed the rows written before the failure)


# --------------------------------------------------------------------------------------------- extraction
@pytest.mark.trains
def test_extraction_saves_versioned_datasets_and_a_run_trains_on_one(curriculum):
    generate(curriculum, users=8, interactions=12)
    first = jobs.launch_trajectory_extraction(curriculum=curriculum)
    tasks.run_trajectory_extraction(first.pk)
    second = jobs.launch_trajectory_extraction(curriculum=curriculum)
    tasks.run_trajectory_extraction(second.pk)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.version, second.version) == ("succeeded", 1, 2)
    assert second.dataset_path == "datasets/algebra/v2/dataset.npz"
    assert artifact_storage().exists("datasets/algebra/v2/statistics.json")
    assert (second.statistics["episodes"], second.statistics["steps"], second.rows_read) == (8, 96, 96)
    dataset = pipeline.load_extracted_dataset(job=second)
    assert len(dataset.actions) == 96

    run = jobs.launch_training_run(curriculum=curriculum, dataset=second, **{**TINY_RUN, "num_users": 1})
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.policy.curriculum == curriculum


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.trains
def test_a_run_on_the_review_log_trains_on_the_curriculas_reviews(curriculum, client, admin_user,
                                                                   django_capture_on_commit_callbacks):
    from django.urls import reverse

    generate(curriculum, users=8, interactions=12)
    client.force_login(admin_user)
    form = {"curriculum": curriculum.pk, "data_source": "review_log", "dataset": "", "num_users": "1",
            "interactions": "20", "concepts": "", "epochs": "1", "batch_size": "16", "seed": "7", "no_cuda": "on",
            "eval_students": "30"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:training_trainingrun_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    run = TrainingRun.objects.get()
    assert (run.data_source, run.concepts) == ("review_log", 5)  # the form takes the curriculum's count

    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    policy = run.policy
    assert policy.config["concept_keys"] == ["c0", "c1", "c2", "c3", "c4"]
    assert policy.config["encoder"]["estimator"] == "fsrs6"  # fitted to the curriculum's log
    assert len(policy.config["encoder"]["fsrs6_same_day_stability"]) == 4
    assert "review log" in policy.notes and len(run.loss_history) == 1


def test_a_run_on_the_review_log_of_a_curriculum_without_reviews_is_refused(curriculum):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        jobs.launch_training_run(curriculum=curriculum, data_source="review_log")
    assert "has no reviews to train on" in info.value.message_dict["curriculum"][0]


@pytest.mark.trains
def test_a_redelivered_training_task_registers_one_version(curriculum):
    run = jobs.launch_training_run(curriculum=curriculum, **TINY_RUN)
    tasks.run_training_run(run.pk)
    tasks.run_training_run(run.pk)  # acks_late: the broker may deliver it again
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 1), run.error
    assert PolicyModel.objects.count() == 1
    policy = PolicyModel.objects.get()
    assert run.policy == policy and policy.status == "candidate"
    assert policy.metrics["results"]["dt"]["mean"] == run.metrics["results"]["dt"]["mean"]
    assert len(run.loss_history) == 1 and run.device == "cpu" and run.epoch == 1
    verify_policy_artifacts(policy=policy)


@pytest.mark.trains
def test_a_run_expected_to_find_a_gpu_on_a_worker_without_one_says_so_and_records_where_it_trained(
        curriculum, monkeypatch, admin_client, settings):
    import torch
    from django.urls import reverse

    settings.CRL_TRAINING_GPU_EXPECTED = True  # a GPU deployment (the default with CRL_ENV=production)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = jobs.launch_training_run(curriculum=curriculum, **{**TINY_RUN, "no_cuda": False})
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert "No GPU on worker" in run.hardware["warning"] and "trains on the CPU" in run.hardware["warning"]
    from training.rl.trainer import cpu_has_bfloat16_units

    dtype = "bfloat16 autocast" if cpu_has_bfloat16_units() else "float32"  # the CPU's default arithmetic
    assert (run.hardware["device_name"], run.hardware["dtype"]) == ("cpu", dtype)
    assert run.hardware["steps_per_s"] > 0 and run.hardware["optimizer_steps"] > 0
    assert set(run.hardware["seconds"]) == {"data", "training", "evaluation", "total"}
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "No GPU on worker" in page and f"cpu (cpu, {dtype})" in page and "optimiser steps/s" in page


@pytest.mark.trains
def test_a_run_of_the_cpu_only_quick_start_carries_no_gpu_warning(curriculum, monkeypatch, settings):
    import torch

    settings.CRL_TRAINING_GPU_EXPECTED = False  # make run's default: no GPU expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = jobs.launch_training_run(curriculum=curriculum, **{**TINY_RUN, "no_cuda": False})  # the form's default
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert "warning" not in run.hardware and run.hardware["device"] == "cpu"


@pytest.mark.trains
def test_a_run_on_the_cpu_by_choice_carries_no_gpu_warning(curriculum, monkeypatch, settings):
    import torch

    settings.CRL_TRAINING_GPU_EXPECTED = True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = jobs.launch_training_run(curriculum=curriculum, **TINY_RUN)  # no_cuda=True
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert "warning" not in run.hardware and run.hardware["device"] == "cpu"


def test_a_redelivery_finding_its_run_stale_marks_it_failed_instead_of_running_it(curriculum, settings):
    settings.CRL_JOB_STALE_SECONDS = 60
    run = TrainingRun.objects.create(curriculum=curriculum, status="running", worker="celery@dead",
                                     heartbeat_at=timezone.now() - dt.timedelta(minutes=5), **TINY_RUN)
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "no heartbeat" in run.error
    assert not PolicyModel.objects.exists()


@pytest.mark.trains
def test_a_cancelled_run_records_cancelled_and_registers_nothing(curriculum, wait_until):
    run = jobs.launch_training_run(curriculum=curriculum, **{**TINY_RUN, "epochs": 1000})

    def operator_cancels_once_training_is_under_way():
        # every phase reports its own progress now: wait for the optimiser's steps
        wait_until(lambda: TrainingRun.objects.filter(pk=run.pk, status="running", phase="training", step__gt=0).exists(),
                   timeout=60, what="training to start", interval=0.05)
        assert jobs.cancel_job(job=run) == "requested"
        connection.close()

    operator = threading.Thread(target=operator_cancels_once_training_is_under_way)
    operator.start()
    tasks.run_training_run(run.pk)
    operator.join()
    run.refresh_from_db()
    assert (run.status, run.policy_id) == ("cancelled", None)
    assert 0 < run.epoch < 1000
    assert not PolicyModel.objects.exists()


def test_a_failing_run_records_the_error_and_registers_nothing(curriculum, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(pipeline, "train_and_export", broken)
    run = jobs.launch_training_run(curriculum=curriculum, **TINY_RUN)
    tasks.run_training_run(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("RuntimeError: CUDA error: out of memory")
    assert run.finished_at is not None and not PolicyModel.objects.exists()
