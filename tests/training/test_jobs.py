"""Jobs without a worker: launching (validation, enqueue on commit, routing), the admin's forms, permissions,
cancel, retry, the status endpoint and the stale-heartbeat check."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from training import jobs
from training.jobs import lifecycle
from training.models import Job, SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model):
    """Staff with exactly the permissions an operator of training runs needs."""
    user = django_user_model.objects.create_user(username="operator", password="pw-operator-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="training", codename__in=["view_trainingrun", "add_trainingrun", "cancel_trainingrun"]
    ))
    return user


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="training", codename="view_trainingrun"))
    return user


def make_run(curriculum, **fields) -> TrainingRun:
    params = dict(curriculum=curriculum, num_users=20, interactions=20, concepts=5, epochs=1, eval_students=30)
    return TrainingRun.objects.create(**{**params, **fields})


ADD_FORM = {
    "data_source": "synthetic", "dataset": "", "num_users": "20", "interactions": "20", "concepts": "5",
    "epochs": "1", "batch_size": "16", "seed": "7", "eval_students": "30",
}


# ------------------------------------------------------------------------------------------ launching
def test_launch_enqueues_only_when_the_transaction_commits(curriculum, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = jobs.launch_training_run(curriculum=curriculum, num_users=20, interactions=20, concepts=5, epochs=1)
    assert sent == []  # nothing reaches the broker before the commit
    for callback in callbacks:
        callback()
    assert sent == [("training.tasks.run_training_run", run.pk)]
    assert run.status == Job.Status.QUEUED


def test_training_runs_are_routed_to_the_gpu_queue_and_the_rest_to_default():
    from crlsite.celery import app

    def queue(name: str) -> str:
        return app.amqp.router.route({}, name, args=(1,), kwargs={})["queue"].name

    assert queue(jobs.TASK_NAMES[TrainingRun]) == "gpu"
    assert queue(jobs.TASK_NAMES[SyntheticGenerationJob]) == "default"
    assert queue(jobs.TASK_NAMES[TrajectoryExtractionJob]) == "default"


def test_launch_refuses_a_synthetic_run_whose_concepts_differ_from_the_curriculum(curriculum, sent):
    with pytest.raises(ValidationError) as info:
        jobs.launch_training_run(curriculum=curriculum, concepts=7)
    assert "set concepts to 5" in info.value.message_dict["concepts"][0]
    assert not TrainingRun.objects.exists()


def test_launch_refuses_a_dataset_run_without_a_finished_dataset(curriculum, sent):
    with pytest.raises(ValidationError) as info:
        jobs.launch_training_run(curriculum=curriculum, data_source="dataset", concepts=5)
    assert "dataset" in info.value.message_dict
    unfinished = TrajectoryExtractionJob.objects.create(curriculum=curriculum)
    with pytest.raises(ValidationError) as info:
        jobs.launch_training_run(curriculum=curriculum, dataset=unfinished)
    assert "has not succeeded" in info.value.message_dict["dataset"][0]


def test_launch_refuses_an_unknown_behaviour_policy_in_the_mix(curriculum, sent):
    with pytest.raises(ValidationError) as info:
        jobs.launch_synthetic_generation(curriculum=curriculum, num_users=5, interactions=5, policy_mix={"oracle": 1})
    assert "not behaviour policies" in info.value.message_dict["policy_mix"][0]


@pytest.mark.parametrize("mix", [{"random": float("nan")}, {"random": float("inf"), "leitner": 1},
                                 {"random": True}, {"random": "1"}])
def test_launch_refuses_a_weight_that_is_not_a_finite_number(curriculum, sent, mix):
    with pytest.raises(ValidationError) as info:
        jobs.launch_synthetic_generation(curriculum=curriculum, num_users=5, interactions=5, policy_mix=mix)
    assert "not finite numbers" in info.value.message_dict["policy_mix"][0] and "['random']" in str(info.value)
    assert not SyntheticGenerationJob.objects.exists()


@pytest.mark.parametrize("mix", [{"random": 1e308, "leitner": 1e308}, {"random": 10**308, "leitner": 10**308},
                                 {"random": 1.7e308, "leitner": 1.7e308, "round_robin": 0}])
def test_launch_refuses_finite_weights_whose_sum_overflows(curriculum, sent, mix):
    with pytest.raises(ValidationError) as info:
        jobs.launch_synthetic_generation(curriculum=curriculum, num_users=5, interactions=5, policy_mix=mix)
    assert "the weights sum to more than the largest number" in info.value.message_dict["policy_mix"][0]
    assert not SyntheticGenerationJob.objects.exists() and not sent


def test_the_generation_form_refuses_weights_whose_sum_overflows(admin_client, curriculum, sent):
    url = reverse("admin:training_syntheticgenerationjob_add")
    response = admin_client.post(url, {"curriculum": curriculum.pk, "num_users": "5", "interactions": "5", "seed": "3",
                                       "policy_mix": '{"random": 1e308, "leitner": 1e308}'})

    assert response.status_code == 200  # the form again, with its error: not a job that fails later
    assert "the weights sum to more than the largest number" in response.context["adminform"].form.errors["policy_mix"][0]
    assert not SyntheticGenerationJob.objects.exists()


def test_a_mix_of_huge_finite_weights_that_fit_is_rescaled_exactly():
    from training.rl.policies import normalise_mix

    assert normalise_mix({"random": 1e308, "leitner": 3e307}) == pytest.approx({"random": 1e308 / 1.3e308,
                                                                                 "leitner": 3e307 / 1.3e308})


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_launch_refuses_a_seed_out_of_bounds(curriculum, sent, seed):
    with pytest.raises(ValidationError) as info:
        jobs.launch_synthetic_generation(curriculum=curriculum, num_users=5, interactions=5, seed=seed)
    assert set(info.value.message_dict) == {"seed"}


def test_the_generation_form_refuses_non_finite_weights_and_takes_an_empty_mix_as_the_default(
    admin_client, curriculum, sent, django_capture_on_commit_callbacks
):
    url = reverse("admin:training_syntheticgenerationjob_add")
    form = {"curriculum": curriculum.pk, "num_users": "5", "interactions": "5", "seed": "3"}
    for weights in ('{"random": NaN}', '{"random": Infinity, "leitner": 1}', '{"random": 1e309}'):
        response = admin_client.post(url, {**form, "policy_mix": weights})
        assert response.status_code == 200, weights  # the form again, with its error: never a 500
        assert "not finite numbers" in response.context["adminform"].form.errors["policy_mix"][0]
    negative = admin_client.post(url, {**form, "seed": "-1", "policy_mix": "{}"})
    assert negative.status_code == 200 and "seed" in negative.context["adminform"].form.errors
    assert not SyntheticGenerationJob.objects.exists()

    page = admin_client.get(url).content.decode()
    assert "varied_target_recall" in page and "relative weights" in page  # the help text lists the names
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**form, "policy_mix": ""})  # the help text: empty for the default mix
    assert response.status_code == 302
    assert SyntheticGenerationJob.objects.get().policy_mix == {}


def test_extraction_needs_reviews_to_extract(curriculum, sent):
    with pytest.raises(ValidationError) as info:
        jobs.launch_trajectory_extraction(curriculum=curriculum)
    assert "has no reviews" in info.value.message_dict["curriculum"][0]


# ---------------------------------------------------------------------------------------------- admin
def test_admin_add_form_launches_a_run_and_shows_its_page(client, operator, curriculum, sent, django_capture_on_commit_callbacks):
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:training_trainingrun_add"), {**ADD_FORM, "curriculum": curriculum.pk})
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:training_trainingrun_change", args=[run.pk])
    assert (run.status, run.created_by, run.seed, run.batch_size) == ("queued", operator, 7, 16)
    assert sent == [("training.tasks.run_training_run", run.pk)]
    page = client.get(response["Location"])
    assert b'id="job-progress"' in page.content and b"job-cancel" in page.content


def test_admin_add_form_explains_invalid_parameters(client, operator, curriculum, sent):
    # The form has no concepts field (the count comes from the curriculum): a posted one is ignored.
    client.force_login(operator)
    response = client.post(
        reverse("admin:training_trainingrun_add"), {**ADD_FORM, "curriculum": curriculum.pk, "concepts": "9", "epochs": "0"}
    )
    assert response.status_code == 200
    assert not TrainingRun.objects.exists()
    errors = response.context["adminform"].form.errors
    assert "concepts" not in errors
    assert "epochs" in errors


def test_staff_without_the_add_permission_cannot_launch(client, viewer, curriculum, sent):
    client.force_login(viewer)
    response = client.post(reverse("admin:training_trainingrun_add"), {**ADD_FORM, "curriculum": curriculum.pk})
    assert response.status_code == 403
    assert not TrainingRun.objects.exists()


def test_cancel_needs_the_cancel_permission(client, viewer, operator, curriculum):
    run = make_run(curriculum)
    client.force_login(viewer)
    assert client.post(reverse("admin:training_trainingrun_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"
    client.force_login(operator)
    client.post(reverse("admin:training_trainingrun_cancel", args=[run.pk]), {"post": "yes"})
    run.refresh_from_db()
    assert run.status == "cancelled"


@pytest.mark.parametrize("method", ["get", "post"])
def test_cancelling_a_run_asks_for_confirmation_first(client, operator, curriculum, method):
    run = make_run(curriculum, status="running", heartbeat_at=timezone.now())
    client.force_login(operator)
    page = getattr(client, method)(reverse("admin:training_trainingrun_cancel", args=[run.pk]))
    text = page.content.decode()
    assert page.status_code == 200 and "Are you sure you want to cancel this training run?" in text
    assert "asked to stop at its next step" in text and 'name="post" value="yes"' in text
    # what the docs promise: a cancelled job keeps none of its results (the newcomer saw "what it made so far is kept")
    assert "keeps none of its results" in text and "is kept" not in text
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == ("running", False)


def test_the_cancel_action_asks_for_confirmation_before_cancelling(client, operator, curriculum):
    queued, running = make_run(curriculum), make_run(curriculum, status="running", heartbeat_at=timezone.now())
    client.force_login(operator)
    page = client.post(reverse("admin:training_trainingrun_changelist"),
                       {"action": "cancel_selected", "_selected_action": [queued.pk, running.pk]})
    text = page.content.decode()
    assert "these 2 training runs?" in text and "never starts: cancelled at once" in text
    assert text.count('name="_selected_action"') == 2 and 'value="cancel_selected"' in text
    queued.refresh_from_db()
    assert queued.status == "queued"


def test_cancel_action_cancels_queued_runs_at_once_and_asks_running_ones_to_stop(client, operator, curriculum):
    queued, running = make_run(curriculum), make_run(curriculum, status="running", heartbeat_at=timezone.now())
    client.force_login(operator)
    client.post(reverse("admin:training_trainingrun_changelist"),
                {"action": "cancel_selected", "_selected_action": [queued.pk, running.pk], "post": "yes"})
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, queued.finished_at is not None) == ("cancelled", True)
    assert (running.status, running.cancel_requested) == ("running", True)


def test_cancelling_a_finished_job_changes_nothing(curriculum):
    run = make_run(curriculum, status="succeeded")
    assert jobs.cancel_job(job=run) == "finished"
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == ("succeeded", False)


def test_retry_launches_a_new_run_with_the_same_parameters(client, operator, curriculum, sent, django_capture_on_commit_callbacks):
    failed = make_run(curriculum, status="failed", seed=99, batch_size=8, error="boom")
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:training_trainingrun_retry", args=[failed.pk]))
    new = TrainingRun.objects.exclude(pk=failed.pk).get()
    assert response["Location"] == reverse("admin:training_trainingrun_change", args=[new.pk])
    assert (new.status, new.seed, new.batch_size, new.created_by) == ("queued", 99, 8, operator)
    assert sent == [("training.tasks.run_training_run", new.pk)]


def test_retry_with_changes_launches_those_and_keeps_the_other_parameters(curriculum, sent,
                                                                         django_capture_on_commit_callbacks):
    failed = make_run(curriculum, status="failed", seed=99, batch_size=8)
    with django_capture_on_commit_callbacks(execute=True):
        new = jobs.retry_job(job=failed, changes={"seed": 100, "epochs": 3})
    assert (new.seed, new.epochs, new.batch_size, new.num_users, new.status) == (100, 3, 8, 20, "queued")
    failed.refresh_from_db()
    assert (failed.status, failed.seed) == ("failed", 99)  # the old run keeps its history
    assert sent == [("training.tasks.run_training_run", new.pk)]


def test_retry_refuses_a_change_that_is_no_parameter_or_out_of_bounds_and_launches_nothing(curriculum, sent):
    failed = make_run(curriculum, status="failed")
    with pytest.raises(TypeError, match="loss not parameters of a training run"):
        jobs.retry_job(job=failed, changes={"loss": 0.1})
    with pytest.raises(ValidationError) as info:
        jobs.retry_job(job=failed, changes={"seed": -1})
    assert set(info.value.message_dict) == {"seed"}
    assert TrainingRun.objects.count() == 1


def test_the_retry_action_of_the_generation_list_takes_a_new_seed(admin_client, curriculum, sent):
    old = SyntheticGenerationJob.objects.create(curriculum=curriculum, num_users=5, interactions=5, seed=41,
                                                status="failed")
    admin_client.post(reverse("admin:training_syntheticgenerationjob_changelist"),
                      {"action": "retry_selected", "_selected_action": [old.pk]})
    new = SyntheticGenerationJob.objects.exclude(pk=old.pk).get()
    assert new.seed == jobs.new_cohort_seed(job=old) == 42 and (new.num_users, new.interactions) == (5, 5)


def test_launch_takes_the_curriculums_concept_count_and_drops_what_the_data_source_ignores(curriculum, sent):
    done = TrajectoryExtractionJob.objects.create(curriculum=curriculum, status="succeeded", version=1)
    synthetic = jobs.launch_training_run(curriculum=curriculum, data_source="synthetic", dataset=done, num_users=30)
    assert (synthetic.concepts, synthetic.dataset, synthetic.num_users) == (5, None, 30)
    on_dataset = jobs.launch_training_run(curriculum=curriculum, dataset=done, num_users=999, interactions=40)
    assert (on_dataset.data_source, on_dataset.num_users, on_dataset.interactions) == ("dataset", 500, 40)
    assert jobs.unused_parameters(data_source="dataset", parameters={"num_users": 999, "dataset": done}) == {
        "num_users": 999}
    assert jobs.unused_parameters(data_source="synthetic", parameters={"num_users": 999, "dataset": done}) == {
        "dataset": done}
    assert jobs.unused_parameters(data_source="review_log", parameters={"num_users": 500, "dataset": None}) == {}


def test_launch_gives_a_curriculum_without_concepts_the_default_count(make_curriculum, sent):
    from training.spec import DEFAULT_CONCEPTS

    empty = make_curriculum("empty", concepts=0)
    assert jobs.launch_training_run(curriculum=empty).concepts == DEFAULT_CONCEPTS  # the pipeline then makes them


def test_status_endpoint_reports_progress_to_staff_only(client, viewer, curriculum):
    run = make_run(curriculum, status="running", heartbeat_at=timezone.now(), step=30, steps=120, epoch=1, epochs=4, loss=1.25)
    url = reverse("admin:training_trainingrun_status", args=[run.pk])
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(viewer)
    data = client.get(url).json()
    assert data["status"] == "running" and data["percent"] == 25.0
    assert (data["epoch"], data["epochs"], data["loss"], data["finished"]) == (1, 4, 1.25, False)


def test_finished_run_page_shows_the_loss_curve(client, viewer, curriculum):
    run = make_run(curriculum, status="succeeded", loss_history=[2.0, 1.5, 1.2, 1.1], epochs=4, epoch=4)
    client.force_login(viewer)
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert 'loss-curve"' in page and "<polyline" in page
    assert "epoch 4: 1.1000" in page


# ---------------------------------------------------------------------------------------- the worker side
def test_a_job_is_claimed_once(curriculum):
    run = make_run(curriculum)
    assert jobs.claim(TrainingRun, job_id=run.pk, worker="w1") is not None
    assert jobs.claim(TrainingRun, job_id=run.pk, worker="w2") is None
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempts) == ("running", "w1", 1)


def test_a_cancelled_queued_job_is_never_claimed(curriculum):
    run = make_run(curriculum)
    jobs.cancel_job(job=run)
    assert jobs.claim(TrainingRun, job_id=run.pk, worker="w1") is None


# ------------------------------------------------------------------------------------------ stale check
def test_a_running_job_without_heartbeat_for_too_long_is_marked_failed(curriculum, settings, monkeypatch):
    settings.CRL_JOB_STALE_SECONDS = 60
    now = timezone.now()
    dead = make_run(curriculum, status="running", heartbeat_at=now - dt.timedelta(seconds=61), worker="celery@gone")
    alive = make_run(curriculum, status="running", heartbeat_at=now - dt.timedelta(seconds=5))
    monkeypatch.setattr(lifecycle, "_now", lambda: now)
    assert jobs.mark_stale_jobs() == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == "failed" and dead.finished_at == now
    assert "no heartbeat from its worker celery@gone for more than 60 s" in dead.error
    assert alive.status == "running"


def test_moving_the_clock_past_the_threshold_fails_a_silent_job(curriculum, settings, monkeypatch):
    settings.CRL_JOB_STALE_SECONDS = 300
    start = timezone.now()
    gen = SyntheticGenerationJob.objects.create(curriculum=curriculum, num_users=5, interactions=5, status="running",
                                                heartbeat_at=start)
    monkeypatch.setattr(lifecycle, "_now", lambda: start + dt.timedelta(seconds=299))
    assert jobs.mark_stale_jobs() == 0
    monkeypatch.setattr(lifecycle, "_now", lambda: start + dt.timedelta(seconds=301))
    assert jobs.mark_stale_jobs() == 1
    gen.refresh_from_db()
    assert gen.status == "failed"


def test_a_restarting_worker_fails_the_jobs_it_was_running(curriculum):
    mine = make_run(curriculum, status="running", heartbeat_at=timezone.now(), worker="celery@box")
    other = make_run(curriculum, status="running", heartbeat_at=timezone.now(), worker="celery@other")
    assert jobs.mark_stale_jobs(restarted_worker="celery@box") == 1
    mine.refresh_from_db()
    other.refresh_from_db()
    assert mine.status == "failed" and "restarted" in mine.error
    assert other.status == "running"


def test_opening_the_job_list_runs_the_stale_check(client, viewer, curriculum, settings):
    settings.CRL_JOB_STALE_SECONDS = 60
    dead = make_run(curriculum, status="running", heartbeat_at=timezone.now() - dt.timedelta(hours=1))
    client.force_login(viewer)
    assert client.get(reverse("admin:training_trainingrun_changelist")).status_code == 200
    dead.refresh_from_db()
    assert dead.status == "failed"
