"""The job, version and learner pages as an operator sees them: forms that fit the data source, retries that say
what they repeat, permission denials that name the permission, charts instead of JSON dumps."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from curriculum.models import Learner, ReviewLog
from training.models import SyntheticGenerationJob, TrainingRun, TrajectoryExtractionJob
from training.rl.model_config import DEFAULT_ATTENTION_WINDOW

pytestmark = pytest.mark.django_db

FORM = {"data_source": "synthetic", "dataset": "", "num_users": "20", "interactions": "20", "epochs": "1",
        "batch_size": "16", "seed": "7", "eval_students": "30"}


@pytest.fixture
def sent(monkeypatch):
    from training.jobs import lifecycle

    calls = []
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: calls.append(job.pk))
    return calls


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="training", codename__in=["view_trainingrun", "view_syntheticgenerationjob"]))
    return user


def test_launch_form_has_one_launch_button_and_no_concepts_field(admin_client, curriculum):
    page = admin_client.get(reverse("admin:training_trainingrun_add")).content.decode()
    assert 'value="Launch"' in page and "_addanother" not in page and "_continue" not in page
    assert 'name="concepts"' not in page
    assert 'id="source-fields"' in page  # what the field switching reads


def test_launch_takes_the_concept_count_from_the_curriculum_and_ignores_fields_of_other_sources(
        admin_client, curriculum, sent, django_capture_on_commit_callbacks):
    done = TrajectoryExtractionJob.objects.create(curriculum=curriculum, status="succeeded", version=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:training_trainingrun_add"),
                                     {**FORM, "curriculum": curriculum.pk, "dataset": done.pk})
    assert response.status_code == 302, response.context["adminform"].form.errors
    run = TrainingRun.objects.get()
    assert (run.concepts, run.dataset, run.num_users) == (5, None, 20)  # a hidden dataset choice is dropped
    admin_client.post(reverse("admin:training_trainingrun_add"),
                      {**FORM, "curriculum": curriculum.pk, "data_source": "dataset", "dataset": done.pk,
                       "num_users": "999"})
    on_dataset = TrainingRun.objects.get(data_source="dataset")
    assert (on_dataset.dataset, on_dataset.num_users, on_dataset.concepts) == (done, 500, 5)
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[on_dataset.pk])).content.decode()
    assert "field-dataset" in page and "field-num_users" not in page  # its page shows what it used
    for unused in ("interactions", "concepts", "eval_students"):  # a dataset run's data and evaluation ignore them
        assert f"field-{unused}" not in page
    assert "field-evaluation" in page and "30 students, 20 reviews each" in page  # what the evaluation will use


def test_launch_says_which_entered_values_the_data_source_does_not_use(admin_client, curriculum, sent):
    done = TrajectoryExtractionJob.objects.create(curriculum=curriculum, status="succeeded", version=1)
    url = reverse("admin:training_trainingrun_add")
    response = admin_client.post(url, {**FORM, "curriculum": curriculum.pk, "data_source": "dataset",
                                       "dataset": done.pk, "num_users": "999"}, follow=True)
    said = [str(m) for m in response.context["messages"]]
    assert "Not used by a run on the dataset from an extraction job, so not part of it: Learners to simulate " \
           "999." in said
    run = TrainingRun.objects.get()
    assert run.num_users == 500
    # the form's object is the launched run: the history entry and the page the operator lands on are its
    assert response.redirect_chain[-1][0] == reverse("admin:training_trainingrun_change", args=[run.pk])
    assert LogEntry.objects.get().object_id == str(run.pk) and f"{run} queued" in said[-1]
    quiet = admin_client.post(url, {**FORM, "curriculum": curriculum.pk, "num_users": "30"}, follow=True)
    assert not any("Not used" in str(m) for m in quiet.context["messages"])  # nothing entered was left out


def test_a_curriculum_with_a_protocol_says_the_evaluation_uses_it_on_the_form_and_the_run_page(
        admin_client, curriculum, make_policy):
    curriculum.evaluation_protocol = {"students": 77, "interactions": 33}
    curriculum.save()
    form = admin_client.get(reverse("admin:training_trainingrun_add"))
    assert "77 students, 33 reviews each" in form.context["protocol_notes"][str(curriculum.pk)]
    assert 'id="protocol-notes"' in form.content.decode()
    run = TrainingRun.objects.create(curriculum=curriculum, status="running", started_at=timezone.now(),
                                     eval_students=30, interactions=20)
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "77 students, 33 reviews each" in page and "are not used" in page


def test_a_running_runs_page_shows_the_phase_progress_one_epoch_and_loss_and_a_ticking_runtime(admin_client, curriculum):
    from training.jobs.stages import stage_weight

    run = TrainingRun.objects.create(curriculum=curriculum, status="running", epochs=1, epoch=1, loss=2.966,
                                     started_at=timezone.now() - dt.timedelta(seconds=90),
                                     heartbeat_at=timezone.now(), phase="evaluating", step=2, steps=5)
    response = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk]))
    page = response.content.decode()
    status = response.context["job_status"]
    assert (status["percent"], status["indeterminate"]) == (40.0, False)  # the evaluation's 2 of 5, not 100%
    weights = [stage_weight(stage) for stage in status["stages"]]  # each stage its share of a run's typical time
    assert "stage 7 of 9: evaluating, 40% (2 / 5)" in page
    assert status["bar"] == round(100 * (sum(weights[:6]) + 0.4 * weights[6]) / sum(weights), 1)
    # the header and the Result section show the same fields, both updated by the poller (data-live)
    assert page.count('data-live="epoch">1<') == 2 and page.count('data-live="loss">2.9660<') == 2
    assert f'data-started="{run.started_at.isoformat()}"' in page and "1 min 30 s so far" in page

    TrainingRun.objects.filter(pk=run.pk).update(phase="evaluating the active version", step=0, steps=0)
    response = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk]))
    assert response.context["job_status"]["indeterminate"] is True
    bar = response.content.decode().split('id="job-progress-bar"')[1].split(">")[0]
    assert "value=" not in bar  # an indeterminate bar, labelled with the phase


def test_a_running_run_without_the_gpu_it_asked_for_says_so_in_the_progress_panel(admin_client, curriculum):
    from training.jobs import job_status

    run = TrainingRun.objects.create(curriculum=curriculum, status="running", epochs=2, epoch=1, no_cuda=False,
                                     started_at=timezone.now(), heartbeat_at=timezone.now(), phase="training",
                                     hardware={"warning": "No GPU on worker w1@box: torch.cuda.is_available() is False"})
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    panel = page.split('id="job-hardware-warning"')[1].split("</ul>")[0]
    assert "hidden" not in panel.split(">")[0] and "No GPU on worker w1@box" in panel
    assert job_status(job=run)["hardware_warning"].startswith("No GPU on worker w1@box")
    TrainingRun.objects.filter(pk=run.pk).update(hardware={})
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert 'id="job-hardware-warning" hidden' in page


def test_launch_form_refuses_a_dataset_of_another_curriculum(admin_client, curriculum, make_curriculum, sent):
    other = make_curriculum("geometry", concepts=5)
    foreign = TrajectoryExtractionJob.objects.create(curriculum=other, status="succeeded", version=1)
    response = admin_client.post(reverse("admin:training_trainingrun_add"),
                                 {**FORM, "curriculum": curriculum.pk, "data_source": "dataset", "dataset": foreign.pk})
    assert response.status_code == 200 and not TrainingRun.objects.exists()
    assert "extracted from 'geometry'" in response.context["adminform"].form.errors["dataset"][0]


def finished_generation(curriculum) -> SyntheticGenerationJob:
    now = timezone.now()
    return SyntheticGenerationJob.objects.create(
        curriculum=curriculum, num_users=30, interactions=10, seed=42, status="succeeded", rows_written=300,
        started_at=now - dt.timedelta(seconds=125), finished_at=now)


def test_retrying_a_generation_offers_a_new_seed_and_warns_about_an_identical_cohort(admin_client, curriculum, sent):
    job = finished_generation(curriculum)
    page = admin_client.get(reverse("admin:training_syntheticgenerationjob_change", args=[job.pk])).content.decode()
    assert 'name="seed"' in page and 'value="43"' in page and "second, identical cohort of\n  30 learners" in page
    assert "2 min 05 s" in page  # the duration, with seconds
    retry = reverse("admin:training_syntheticgenerationjob_retry", args=[job.pk])
    response = admin_client.post(retry, {"seed": "42"}, follow=True)
    same = SyntheticGenerationJob.objects.exclude(pk=job.pk).get()
    assert same.seed == 42
    assert any("second, identical cohort of 30 learners" in str(m) for m in response.context["messages"])
    admin_client.post(retry, {"seed": "43"})
    assert SyntheticGenerationJob.objects.filter(seed=43).count() == 1


def test_a_permission_denial_names_the_missing_permission(client, viewer, curriculum):
    run = TrainingRun.objects.create(curriculum=curriculum, concepts=5)
    client.force_login(viewer)
    response = client.post(reverse("admin:training_trainingrun_cancel", args=[run.pk]))
    assert response.status_code == 403
    text = response.content.decode()
    assert "training.cancel_trainingrun" in text and "Can cancel training runs" in text
    denied = client.get(reverse("admin:training_trainingrun_add"))
    assert denied.status_code == 403 and "training.add_trainingrun" in denied.content.decode()


def test_cancel_messages_use_the_right_plural(admin_client, curriculum):
    one = TrainingRun.objects.create(curriculum=curriculum, concepts=5)
    response = admin_client.post(reverse("admin:training_trainingrun_changelist"),
                                 {"action": "cancel_selected", "_selected_action": [one.pk], "post": "yes"},
                                 follow=True)
    assert [str(m) for m in response.context["messages"]] == ["1 job cancelled before starting"]


def test_extraction_statistics_are_charts_not_a_json_dump(admin_client, curriculum):
    stats = {"episodes": 2, "steps": 20, "state_dim": 20,
             "return": {"mean": 1.0, "std": 0.5, "min": 0.5, "max": 1.5, "p10": 0.6, "p50": 1.0, "p90": 1.4,
                        "histogram": {"edges": [0.5, 1.0, 1.5], "counts": [1, 1]}},
             "episode_length": {"mean": 10.0, "std": 0.0, "min": 10.0, "max": 10.0, "p10": 10.0, "p50": 10.0,
                                "p90": 10.0, "histogram": {"edges": [9.5, 10.5], "counts": [2]}},
             "actions": {"count": 2, "counts": {"c0": 12, "c1": 8}, "most_common": "c0", "least_common": "c1",
                         "normalised_entropy": 0.97}}
    job = TrajectoryExtractionJob.objects.create(curriculum=curriculum, status="succeeded", version=1, statistics=stats)
    page = admin_client.get(reverse("admin:training_trajectoryextractionjob_change", args=[job.pk])).content.decode()
    assert page.count('class="crl-chart histogram"') == 2 and 'class="crl-chart bar-chart"' in page
    assert "2 episodes of 20 steps" in page
    assert "Warning: too few learners to learn from: 2 episodes" in page  # an extraction of 2 learners
    assert page.index("<details><summary>all statistics (JSON)") > page.index("crl-chart histogram")


def test_the_episode_lengths_of_one_learners_extraction_are_one_bin_of_that_length(admin_client, curriculum):
    """One learner's 6,220 reviews: the chart's bar says "6220: 1", with no "6.22e+03" anywhere on it."""
    one = {"mean": 6220.0, "std": 0.0, "min": 6220.0, "max": 6220.0, "p10": 6220.0, "p50": 6220.0, "p90": 6220.0}
    stats = {"episodes": 1, "steps": 6220, "state_dim": 20,
             "return": {**one, "mean": 31.5, "min": 31.5, "max": 31.5, "p10": 31.5, "p50": 31.5, "p90": 31.5,
                        "histogram": {"edges": [31.0, 32.0], "counts": [1]}},
             # as stored before one bin: numpy's twenty bins over 6219.5 to 6220.5
             "episode_length": {**one, "histogram": {"edges": [6219.5 + 0.05 * i for i in range(21)],
                                                     "counts": [0] * 10 + [1] + [0] * 9}},
             "actions": {"count": 2, "counts": {"c0": 3000, "c1": 3220}, "most_common": "c1", "least_common": "c0",
                         "normalised_entropy": 0.99}}
    job = TrajectoryExtractionJob.objects.create(curriculum=curriculum, status="succeeded", version=1, statistics=stats)
    page = admin_client.get(reverse("admin:training_trajectoryextractionjob_change", args=[job.pk])).content.decode()
    chart = page[page.index('aria-label="Episode lengths"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count('class="bar"') == 1 and "<title>6220: 1</title>" in chart
    assert "e+03" not in chart


def test_version_page_shows_its_evaluation_and_loss_above_the_raw_config(admin_client, curriculum, make_policy):
    policy = make_policy(curriculum, recall=0.6)
    TrainingRun.objects.create(curriculum=curriculum, concepts=5, status="succeeded", policy=policy,
                               loss_history=[2.0, 1.5], loss_steps=[[10, 2.2], [20, 1.8], [30, 1.5], [40, 1.4]])
    page = admin_client.get(reverse("admin:curriculum_policymodel_change", args=[policy.pk])).content.decode()
    evaluation, loss, config = (page.index('class="crl-chart bar-chart"'), page.index("loss-curve"),
                                page.index("dt_lite_config.json</summary>"))
    assert evaluation < config and loss < config
    assert ">optimiser step<" in page


def test_an_evaluated_runs_page_shows_its_evaluation_and_links_the_version_it_registered(
        admin_client, curriculum, make_policy):
    # The run's "Evaluation" field read "-" for every evaluated run: it was the version page's method, which also
    # reads what only a version has (AttributeError, which the admin shows as "-").
    policy = make_policy(curriculum, recall=0.6)
    families = {"actr": {"dt": {"mean": 0.55, "ci95": [0.54, 0.56]}, "best_behaviour": None, "paired": {},
                         "gap_closed": None}}
    run = TrainingRun.objects.create(curriculum=curriculum, concepts=5, status="succeeded", policy=policy,
                                     metrics={**policy.metrics, "families": families})
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    evaluation = page.split("<label>Evaluation:</label>", 1)[1].split("</fieldset>", 1)[0]
    assert '<div class="readonly">-</div>' not in evaluation
    assert 'class="crl-chart bar-chart"' in evaluation  # the chart, then the table per policy and per family
    assert "<td>dt</td><td>0.6000</td><td>[0.5900, 0.6100]</td>" in evaluation
    assert 'class="crl-families"' in evaluation and "<td>actr</td>" in evaluation
    version_page = reverse("admin:curriculum_policymodel_change", args=[policy.pk])
    assert f'<a href="{version_page}">{policy}</a>' in evaluation  # where its evaluation under the protocol is

    unevaluated = TrainingRun.objects.create(curriculum=curriculum, concepts=5, status="failed")
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[unevaluated.pk])).content.decode()
    assert '<div class="readonly">not evaluated</div>' in page.split("<label>Evaluation:</label>", 1)[1]


def test_a_running_runs_progress_panel_names_its_phase_once(admin_client, curriculum):
    run = TrainingRun.objects.create(curriculum=curriculum, status="running", started_at=timezone.now(),
                                     heartbeat_at=timezone.now(), phase="fitting the encoder", step=3, steps=6,
                                     data_source="review_log")
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    panel = page.split('id="job-progress"', 1)[1].split("</fieldset>", 1)[0]
    assert "stage 3 of 9: fitting the encoder, 50% (3 / 6)" in panel  # the bar's label says the phase...
    assert panel.count("fitting the encoder") == 1  # ...and nothing repeats it beside the status


def test_learner_page_shows_the_review_timeline_and_recall_per_concept(admin_client, curriculum):
    learner = Learner.objects.create(external_id="ada")
    concepts = list(curriculum.concepts.order_by("position"))
    start = timezone.now() - dt.timedelta(days=3)
    for i, (concept, correct) in enumerate([(concepts[0], True), (concepts[1], False), (concepts[0], True)]):
        ReviewLog.objects.create(learner=learner, curriculum=curriculum, concept=concept, correct=correct,
                                 reviewed_at=start + dt.timedelta(hours=5 * i), source="live")
    page = admin_client.get(reverse("admin:curriculum_learner_change", args=[learner.pk])).content.decode()
    assert "Review timeline" in page and "Estimated recall per concept" in page
    assert 'data-series="c0"' in page and 'data-series="c1"' in page and 'data-series="c2"' not in page


def test_recall_history_jumps_at_a_correct_review_and_decays_after(curriculum):
    from curriculum.learner_history import recall_history

    learner = Learner.objects.create(external_id="bob")
    concept = curriculum.concepts.get(position=0)
    at = timezone.now() - dt.timedelta(days=2)
    ReviewLog.objects.create(learner=learner, curriculum=curriculum, concept=concept, correct=True, reviewed_at=at,
                             source="live")
    history = recall_history(learner=learner, curriculum=curriculum, points=50)
    assert history.concepts == ["c0"]
    recall = history.recall[:, 0]
    t0 = at.timestamp()
    after = history.times >= t0
    assert recall[after][0] == pytest.approx(1.0) and recall[-1] < recall[after][0]
    assert all(a >= b - 1e-12 for a, b in zip(recall[after], recall[after][1:]))  # forgetting: never rises


def test_a_finished_runs_page_warns_when_it_learned_from_too_few_learners(admin_client, curriculum):
    run = TrainingRun.objects.create(curriculum=curriculum, status="succeeded", metrics={"training_data": {
        "episodes": 1, "steps": 6220, "concepts": 610,
        "warnings": ["too few learners to learn from: 1 episode(s) (one per learner), fewer than 50"]}})
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "1 episodes (learners), 6220 reviews, 610 concepts" in page
    assert '<div class="warning">Warning: too few learners to learn from: 1 episode(s)' in page


def test_the_launch_form_takes_student_families_and_names_an_unknown_one(admin_client, curriculum, sent):
    url = reverse("admin:training_trainingrun_add")
    bad = admin_client.post(url, {**FORM, "curriculum": curriculum.pk, "families": "builtin,ebbinghaus"})
    assert bad.status_code == 200 and "unknown student family" in str(bad.context["adminform"].form.errors)
    admin_client.post(url, {**FORM, "curriculum": curriculum.pk, "families": "actr, hlr"})
    assert TrainingRun.objects.get().families == "actr,hlr"


def test_a_command_line_versions_page_draws_the_loss_its_config_records(admin_client, curriculum, make_policy):
    # train_crl_policy --register makes no TrainingRun: the per-epoch losses are in dt_lite_config.json's extra
    policy = make_policy(curriculum, recall=0.6)
    policy.config = {**policy.config, "extra": {"loss_history": [2.1, 1.7, 1.6]}}
    policy.save(update_fields=["config"])
    page = admin_client.get(reverse("admin:curriculum_policymodel_change", args=[policy.pk])).content.decode()
    assert "loss-curve" in page and "epoch 3: 1.6000" in page


@pytest.mark.parametrize("entered, kept", [("", None), ("0", 0), ("12", 12), (str(DEFAULT_ATTENTION_WINDOW),
                                                                              DEFAULT_ATTENTION_WINDOW)])
def test_the_launch_form_takes_an_attention_window_empty_for_the_default_and_0_for_full_attention(
        admin_client, curriculum, sent, entered, kept):
    page = admin_client.get(reverse("admin:training_trainingrun_add")).content.decode()
    assert 'name="attention_window"' in page and f'max="{DEFAULT_ATTENTION_WINDOW}"' in page
    response = admin_client.post(reverse("admin:training_trainingrun_add"),
                                 {**FORM, "curriculum": curriculum.pk, "attention_window": entered})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert TrainingRun.objects.get().attention_window == kept


@pytest.mark.parametrize("entered", [str(DEFAULT_ATTENTION_WINDOW + 1), "-1"])
def test_the_launch_form_refuses_an_attention_window_out_of_range_naming_the_range(
        admin_client, curriculum, sent, entered):
    response = admin_client.post(reverse("admin:training_trainingrun_add"),
                                 {**FORM, "curriculum": curriculum.pk, "attention_window": entered})
    assert response.status_code == 200 and not TrainingRun.objects.exists() and sent == []
    (error,) = response.context["adminform"].form.errors["attention_window"]
    assert error == (f"Expected 0 (full attention) or a window of 1 to {DEFAULT_ATTENTION_WINDOW} tokens ((3 x "
                     f"context_length - 2) // num_layers + 1 keeps the per-step path exact), or empty for the "
                     f"default, the widest ({DEFAULT_ATTENTION_WINDOW} tokens); got {entered}.")


def test_launch_refuses_an_attention_window_the_default_model_cannot_take(curriculum, sent):
    from django.core.exceptions import ValidationError

    from training import jobs

    with pytest.raises(ValidationError, match=f"a window of 1 to {DEFAULT_ATTENTION_WINDOW} tokens"):
        jobs.launch_training_run(curriculum=curriculum, attention_window=DEFAULT_ATTENTION_WINDOW + 1)
    assert not TrainingRun.objects.exists()
    retried = jobs.retry_job(job=jobs.launch_training_run(curriculum=curriculum, attention_window=0))
    assert retried.attention_window == 0  # a retry repeats it


def test_the_launch_form_takes_policy_gradient_rounds_off_by_default_and_run_again_repeats_them(
        admin_client, curriculum, sent):
    page = admin_client.get(reverse("admin:training_trainingrun_add")).content.decode()
    assert 'name="policy_gradient_rounds"' in page and 'value="0"' in page and 'max="1000"' in page
    for entered in ({}, {"policy_gradient_rounds": ""}):  # left out or empty: off
        assert admin_client.post(reverse("admin:training_trainingrun_add"),
                                 {**FORM, "curriculum": curriculum.pk, **entered}).status_code == 302
    assert list(TrainingRun.objects.values_list("policy_gradient_rounds", flat=True)) == [0, 0]
    response = admin_client.post(reverse("admin:training_trainingrun_add"),
                                 {**FORM, "curriculum": curriculum.pk, "policy_gradient_rounds": "3"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    run = TrainingRun.objects.get(policy_gradient_rounds=3)
    run.status = "failed"
    run.save(update_fields=["status"])
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert re.search(r'field-policy_gradient_rounds.*?<label>Policy-gradient rounds:</label>.*?'
                     r'<div class="readonly">3</div>', page, flags=re.S)  # its page shows them, after the window
    assert page.index("field-attention") < page.index("field-policy_gradient_rounds")

    admin_client.post(reverse("admin:training_trainingrun_retry", args=[run.pk]))  # "run again"
    again = TrainingRun.objects.exclude(pk=run.pk).get(policy_gradient_rounds=3)
    assert again.status == "queued" and again.data_source == "synthetic"


@pytest.mark.parametrize("source", ["review_log", "dataset"])
def test_the_launch_form_refuses_policy_gradient_rounds_on_data_other_than_a_synthetic_cohort(
        admin_client, curriculum, sent, source):
    learner = Learner.objects.create(external_id="ada")
    ReviewLog.objects.create(learner=learner, curriculum=curriculum, concept=curriculum.concepts.first(),
                             correct=True, reviewed_at=timezone.now(), source="live")
    done = TrajectoryExtractionJob.objects.create(curriculum=curriculum, status="succeeded", version=1)
    form = {**FORM, "curriculum": curriculum.pk, "data_source": source,
            "dataset": done.pk if source == "dataset" else ""}
    response = admin_client.post(reverse("admin:training_trainingrun_add"), {**form, "policy_gradient_rounds": "3"})
    assert response.status_code == 200 and not TrainingRun.objects.exists() and sent == []
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["policy_gradient_rounds"]
    assert errors["policy_gradient_rounds"] == [
        "policy-gradient fine-tuning simulates the training students' families, so it needs the synthetic data "
        "source (the learners of a review log or a dataset are not simulated students): set it to 0 (off) or "
        "choose the synthetic data source"]
    response = admin_client.post(reverse("admin:training_trainingrun_add"), {**form, "policy_gradient_rounds": "0"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    run = TrainingRun.objects.get()
    assert (run.data_source, run.policy_gradient_rounds) == (source, 0)
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "field-policy_gradient_rounds" not in page  # a run on other data has none to show


def test_the_policy_gradient_rounds_help_text_names_the_commands_default():
    from training.rl.policy_gradient import PolicyGradientConfig  # PyTorch: the model cannot import it

    help_text = TrainingRun._meta.get_field("policy_gradient_rounds").help_text
    assert f"train_crl_policy runs {PolicyGradientConfig().rounds} by default for synthetic data" in help_text


def test_a_runs_page_shows_the_attention_window_asked_and_the_one_its_version_trained(
        admin_client, curriculum, make_policy):
    def shown(run):
        page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
        label, value = re.search(r'field-attention".*?<label>(.*?)</label>.*?<div class="readonly">(.*?)</div>',
                                 page, flags=re.S).groups()
        return f"{label} {value}"

    queued = TrainingRun.objects.create(curriculum=curriculum)
    assert shown(queued) == (f"Attention window: default (the widest exact window, {DEFAULT_ATTENTION_WINDOW} "
                             f"tokens)")
    policy = make_policy(curriculum)
    policy.config = {**policy.config, "attention_window": DEFAULT_ATTENTION_WINDOW}
    policy.save(update_fields=["config"])
    done = TrainingRun.objects.create(curriculum=curriculum, status="succeeded", policy=policy)
    assert shown(done).endswith(f"tokens); trained: {DEFAULT_ATTENTION_WINDOW} tokens")
    full = TrainingRun.objects.create(curriculum=curriculum, status="succeeded", attention_window=0,
                                      policy=make_policy(curriculum))  # its config has no window: full attention
    assert shown(full) == "Attention window: full attention; trained: full attention"
    windowed = TrainingRun.objects.create(curriculum=curriculum, status="running", attention_window=12)
    assert shown(windowed) == "Attention window: 12 tokens"
