"""train_and_register: the one path from a TrainingSpec to a registered (and, if asked, promoted) version. The
entry points (the command, the admin's launch through the Celery task's body) are seen calling it; its own order
(evaluate the active version, register with the caller's hooks in one transaction, promote) is checked with the
pipeline replaced by a stand-in that 'trains' in no time."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.urls import reverse

from curriculum.models import PolicyModel, PromotionEvent
from curriculum.services import PolicyError, promote_policy
from training import services, tasks
from training.jobs import lifecycle, spec_of
from training.models import TrainingRun
from training.pipeline import PipelineError, PolicyResult
from training.rl.trainer import TrainingCancelled
from training.spec import TrainingSpec

pytestmark = pytest.mark.django_db(transaction=True)  # the job runs here with its heartbeat thread


class Recorded(Exception):
    """The stand-in service's answer: the call was seen, nothing was trained."""


@pytest.fixture
def service_calls(monkeypatch):
    """Replace train_and_register by a recorder (its keyword arguments), which raises Recorded."""
    calls = []

    def recorder(**kwargs):
        calls.append(kwargs)
        raise Recorded("train_and_register was called")

    monkeypatch.setattr(services, "train_and_register", recorder)
    return calls


def test_the_command_trains_and_registers_through_the_service(service_calls, tmp_path, curriculum):
    with pytest.raises(Recorded):
        call_command("train_crl_policy", "--output_dir", str(tmp_path), "--curriculum", curriculum.key, "--epochs", "3",
                     "--promote", "--reason", "better", "--no-progress", stdout=io.StringIO(), stderr=io.StringIO())
    (call,) = service_calls
    assert call["spec"] == TrainingSpec(epochs=3)
    assert call["policy_gradient_rounds"] is None  # the stage's default: on for synthetic data (the pipeline decides)
    assert (call["source"], call["curriculum"], call["promote"], call["reason"]) == ("synthetic", "algebra", True,
                                                                                     "better")


def test_a_run_launched_in_the_admin_trains_and_registers_through_the_service(
        service_calls, admin_client, curriculum, monkeypatch):
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: None)  # the task's body runs here instead
    form = {"curriculum": curriculum.pk, "data_source": "synthetic", "dataset": "", "num_users": "20",
            "interactions": "20", "epochs": "1", "batch_size": "16", "seed": "7", "eval_students": "30"}
    assert admin_client.post(reverse("admin:training_trainingrun_add"), form).status_code == 302
    run = TrainingRun.objects.get()

    tasks.run_training_run(run.pk)

    (call,) = service_calls
    assert call["spec"] == spec_of(run) == TrainingSpec(num_users=20, interactions=20, concepts=5, epochs=1,
                                                        batch_size=16, seed=7, eval_students=30)
    assert (call["curriculum"], call["register"], call.get("promote", False)) == (curriculum, True, False)
    assert callable(call["before_register"]) and callable(call["on_registered"])  # the run's lock and record
    assert run.policy_gradient_rounds == call["policy_gradient_rounds"] == 0  # off unless the operator asks
    run.refresh_from_db()
    assert run.status == "failed" and "Recorded: train_and_register was called" in run.error


def test_a_run_launched_with_policy_gradient_rounds_passes_them_to_the_service(
        service_calls, admin_client, curriculum, monkeypatch):
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: None)  # the task's body runs here instead
    form = {"curriculum": curriculum.pk, "data_source": "synthetic", "dataset": "", "num_users": "20",
            "interactions": "20", "epochs": "1", "batch_size": "16", "seed": "7", "eval_students": "30",
            "policy_gradient_rounds": "3"}
    assert admin_client.post(reverse("admin:training_trainingrun_add"), form).status_code == 302
    run = TrainingRun.objects.get()
    assert run.policy_gradient_rounds == 3

    tasks.run_training_run(run.pk)

    (call,) = service_calls
    assert call["policy_gradient_rounds"] == 3
    assert call["spec"] == spec_of(run) and call["source"] == "synthetic"


@pytest.mark.parametrize("entered, window", [("12", 12), ("0", 0), ("", None)])
def test_a_run_launched_in_the_admin_trains_with_the_attention_window_it_asked_for(
        admin_client, curriculum, monkeypatch, entered, window):
    # the task's body -> train_and_register -> the pipeline's train_policy, stopped there (nothing is trained)
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: None)
    calls = []

    def train_policy(**kwargs):
        calls.append(kwargs)
        raise Recorded("train_policy was called")

    monkeypatch.setattr(services, "train_policy", train_policy)
    form = {"curriculum": curriculum.pk, "data_source": "synthetic", "dataset": "", "num_users": "20",
            "interactions": "20", "epochs": "1", "batch_size": "16", "seed": "7", "eval_students": "30",
            "attention_window": entered}
    assert admin_client.post(reverse("admin:training_trainingrun_add"), form).status_code == 302
    run = TrainingRun.objects.get()
    assert run.attention_window == window

    tasks.run_training_run(run.pk)

    (call,) = calls
    assert call["attention_window"] == window  # None: the default, the widest exact window; 0: full attention
    assert call["spec"] == spec_of(run)
    run.refresh_from_db()
    assert run.status == "failed" and "Recorded: train_policy was called" in run.error


# ---------------------------------------------------------------------------------------- the service itself
@pytest.fixture
def trained(monkeypatch, fake_artifact_dir, evaluation_metrics):
    """Replace the pipeline's train_policy by one that 'trains' a version evaluating at ``trained.recall`` (random
    0.3) for the curriculum it is given; ``trained.specs``: the specs it was called with."""
    stand_in = SimpleNamespace(recall=0.5, specs=[])

    def train_policy(*, spec, output_dir, curriculum, progress, **kwargs):
        stand_in.specs.append(spec)
        if isinstance(curriculum, str):  # the command passes the key; the pipeline resolves it
            from curriculum.models import Curriculum

            curriculum = Curriculum.objects.get(key=curriculum)
        if progress is not None:
            progress("training", 1, 1, {})
        n = len(stand_in.specs)
        return PolicyResult(curriculum=curriculum, output_dir=Path(fake_artifact_dir(f"run{n}")), files={},
                            config={"v": n}, metrics=evaluation_metrics(recall=stand_in.recall), final_loss=1.0,
                            losses=[1.0], device="cpu", dataset_stats={})

    monkeypatch.setattr(services, "train_policy", train_policy)
    return stand_in


def test_registering_evaluates_the_active_version_first_then_registers_and_promotes(
        trained, curriculum, make_policy, monkeypatch, tmp_path):
    active = make_policy(curriculum, recall=0.4)
    promote_policy(policy=active, reason="the first")
    seen = []
    monkeypatch.setattr(services, "evaluate_active_under_protocol",
                        lambda *, curriculum, **kw: seen.append(("evaluate active", curriculum.key)))
    stages = []

    made = services.train_and_register(
        spec=TrainingSpec(), output_dir=tmp_path, curriculum=curriculum, promote=True, reason="better", notes="n",
        progress=lambda stage, done, total, info: stages.append(stage),
        before_register=lambda result: seen.append(("before", PolicyModel.objects.count())),
        on_registered=lambda policy, result: seen.append(("after", policy.version)),
    )

    assert stages == ["training", services.EVALUATING_ACTIVE, services.REGISTERING]
    assert seen == [("evaluate active", "algebra"), ("before", 1), ("after", 2)]
    assert (made.policy.version, made.policy.status, made.policy.notes) == (2, "active", "n")
    assert (made.promotion.from_version, made.promotion.to_version, made.promotion.reason) == (1, 2, "better")


def test_without_register_nothing_is_registered_and_the_active_version_is_not_evaluated(
        trained, curriculum, monkeypatch, tmp_path):
    monkeypatch.setattr(services, "evaluate_active_under_protocol", lambda **kw: pytest.fail("evaluated"))
    made = services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path, curriculum=curriculum)
    assert (made.policy, made.promotion) == (None, None) and made.result.curriculum == curriculum
    assert not PolicyModel.objects.exists()


def test_a_refused_promotion_keeps_the_registered_candidate_and_says_why(trained, curriculum, tmp_path):
    trained.recall = 0.2  # below the random baseline (0.3): the gate refuses
    with pytest.raises(services.NotPromoted, match=r"registered algebra v1 \(candidate\) but did not promote it: "
                                                   r".*below the random baseline") as info:
        services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path, curriculum=curriculum, promote=True,
                                    reason="try")
    assert info.value.outcome.policy == PolicyModel.objects.get() and info.value.outcome.result.metrics
    assert PolicyModel.objects.get().status == "candidate" and not PromotionEvent.objects.exists()


def test_an_active_version_that_cannot_be_evaluated_blocks_the_promotion_not_the_registration(
        trained, curriculum, monkeypatch, tmp_path):
    def tampered(*, curriculum, **kw):
        raise PolicyError("algebra v1: artifact dt_lite_weights.npz does not match its SHA-256")

    monkeypatch.setattr(services, "evaluate_active_under_protocol", tampered)
    registered = services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path / "a", curriculum=curriculum,
                                             register=True)
    assert registered.policy.status == "candidate"
    with pytest.raises(services.NotPromoted, match="did not promote it: .*does not match its SHA-256"):
        services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path / "b", curriculum=curriculum,
                                    promote=True, force=True, reason="forced")
    assert list(PolicyModel.objects.values_list("version", "status")) == [(2, "candidate"), (1, "candidate")]


@pytest.mark.parametrize("hook", ["before_register", "on_registered"])
def test_a_hook_that_refuses_leaves_no_version(trained, curriculum, tmp_path, hook):
    def refuse(*args):
        raise lifecycle.JobLost("the run was registered already")

    with pytest.raises(lifecycle.JobLost):
        services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path, curriculum=curriculum, register=True,
                                    **{hook: refuse})
    assert not PolicyModel.objects.exists()  # one transaction: the version goes with the hook's refusal


def test_a_stop_asked_after_training_registers_nothing(trained, curriculum, tmp_path):
    asked = iter([False, True])  # the pipeline's own boundaries are replaced: the first ask is the service's
    with pytest.raises(TrainingCancelled):
        services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path, curriculum=curriculum, register=True,
                                    should_stop=lambda: next(asked, True))
    assert not PolicyModel.objects.exists()


def test_a_version_to_register_needs_a_curriculum_before_anything_is_trained(trained, tmp_path):
    with pytest.raises(PipelineError, match="--register/--promote need --curriculum"):
        services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path, register=True)
    assert trained.specs == []


# ------------------------------------------------------------------------ the fallback: what a first version must beat
def test_a_first_version_is_compared_with_the_fallback_evaluated_under_its_protocol_once(trained, curriculum, tmp_path):
    from curriculum import selectors
    from curriculum.evaluation_protocol import dt_mean
    from training import protocol_evaluation

    trained.recall = 0.31  # above random (0.3), below lowest_recall on 5 concepts with the default encoder
    with pytest.raises(services.NotPromoted, match=r"did not promote it: v1 does not beat the fallback it would "
                                                   r"replace: lowest_recall.* scores 0\.\d{4} under the same protocol"):
        services.train_and_register(spec=TrainingSpec(), output_dir=tmp_path, curriculum=curriculum, promote=True,
                                    reason="first")
    curriculum.refresh_from_db()
    stored = selectors.fallback_evaluation(curriculum=curriculum, protocol=curriculum.protocol, num_concepts=5)
    assert stored is not None and 0.31 < dt_mean(stored, "lowest_recall") < 1.0
    assert stored["students"] == curriculum.protocol.students and stored["num_concepts"] == 5
    again = protocol_evaluation.evaluate_fallback_under_protocol(curriculum=curriculum, num_concepts=5)
    assert again == stored  # once per protocol: read back, not simulated again


def test_the_fallback_is_evaluated_under_a_changed_protocol_anew(curriculum):
    from curriculum.evaluation_protocol import EvaluationProtocol, dt_mean
    from training import protocol_evaluation

    small = EvaluationProtocol(students=20, interactions=30)
    first = protocol_evaluation.evaluate_fallback_under_protocol(curriculum=curriculum, protocol=small, num_concepts=5)
    other = protocol_evaluation.evaluate_fallback_under_protocol(curriculum=curriculum, num_concepts=5)
    assert first["protocol"] == small.to_dict() and other["protocol"] == curriculum.protocol.to_dict()
    assert dt_mean(first, "lowest_recall") != dt_mean(other, "lowest_recall")
    curriculum.refresh_from_db()
    assert len(curriculum.fallback_evaluations) == 2


def test_train_crl_policy_promote_says_the_version_does_not_beat_the_fallback(trained, curriculum, tmp_path):
    from django.core.management.base import CommandError

    trained.recall = 0.31
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"registered algebra v1 \(candidate\) but did not promote it: v1 does not "
                                           r"beat the fallback it would replace: lowest_recall"):
        call_command("train_crl_policy", "--output_dir", str(tmp_path), "--curriculum", curriculum.key, "--promote",
                     "--no-progress", stdout=out, stderr=io.StringIO())
    assert "Evaluation:" in out.getvalue()  # the summary is still printed beside the refusal
    call_command("train_crl_policy", "--output_dir", str(tmp_path / "b"), "--curriculum", curriculum.key, "--promote",
                 "--force", "--reason", "below the fallback, served on purpose", "--no-progress",
                 stdout=io.StringIO(), stderr=io.StringIO())
    event = PromotionEvent.objects.get()
    assert event.forced and event.reason == "below the fallback, served on purpose" and event.to_version == 2


def test_a_round_robin_fallback_is_evaluated_as_round_robin_under_its_own_key(curriculum):
    from curriculum import selectors
    from curriculum.evaluation_protocol import EvaluationProtocol, dt_mean
    from training import protocol_evaluation
    from curriculum.state_specs import StateSpec
    from training.rl.evaluation import final_recall

    small = EvaluationProtocol(students=20, interactions=30)
    lowest = protocol_evaluation.evaluate_fallback_under_protocol(curriculum=curriculum, protocol=small, num_concepts=5)
    type(curriculum).objects.filter(pk=curriculum.pk).update(fallback_rule="round_robin")
    curriculum.refresh_from_db()
    assert selectors.fallback_evaluation(curriculum=curriculum, protocol=small, num_concepts=5) is None
    rr = protocol_evaluation.evaluate_fallback_under_protocol(curriculum=curriculum, protocol=small, num_concepts=5)
    assert set(rr["results"]) == {"round_robin"} and set(lowest["results"]) == {"lowest_recall"}
    expected = final_recall(policy_name="round_robin", num_concepts=5, students=20, interactions=30,
                            seed=small.seed, encoder=StateSpec.default(num_concepts=5).encoder_config)
    assert dt_mean(rr, "round_robin") == pytest.approx(float(expected.mean()))
    assert selectors.fallback_evaluation(curriculum=curriculum, protocol=small, num_concepts=5) == rr
    assert len(curriculum.fallback_evaluations) == 2  # the lowest_recall one is kept, under its own key


def test_evaluating_what_serves_evaluates_the_fallback_over_a_candidate_deck_the_active_version_does_not_cover(
        curriculum, make_policy):
    from curriculum import selectors
    from curriculum.evaluation_protocol import EvaluationProtocol
    from curriculum.models import PolicyModel
    from curriculum.services import promote_policy
    from training import protocol_evaluation

    small = EvaluationProtocol(students=20, interactions=30)
    type(curriculum).objects.filter(pk=curriculum.pk).update(evaluation_protocol=small.to_dict())
    curriculum.refresh_from_db()
    active = make_policy(curriculum, recall=0.5, fallback=None)  # evaluated under the protocol: not simulated again
    PolicyModel.objects.filter(pk=active.pk).update(config={"concept_keys": ["c0", "c1", "c2"]})
    promote_policy(policy=active, force=True, reason="three concepts")
    protocol_evaluation.evaluate_active_under_protocol(curriculum=curriculum, protocol=small, num_concepts=3)
    curriculum.refresh_from_db()
    assert not curriculum.fallback_evaluations  # the same deck: the active version is the bar
    protocol_evaluation.evaluate_active_under_protocol(curriculum=curriculum, protocol=small, num_concepts=5)
    curriculum.refresh_from_db()
    stored = selectors.fallback_evaluation(curriculum=curriculum, protocol=small, num_concepts=5)
    assert stored is not None and stored["num_concepts"] == 5 and len(curriculum.fallback_evaluations) == 1


def test_evaluating_an_evaluated_version_still_evaluates_the_fallback_the_gate_holds_it_to(curriculum, make_policy):
    # a reviewer's dead end: v2 (5 concepts) evaluated at registration; v1 (3 concepts) made active since; the gate
    # asks to "evaluate v2 under the protocol (it evaluates the fallback too)", and the job returned at once
    from curriculum import selectors, services as gate
    from curriculum.evaluation_protocol import EvaluationProtocol
    from curriculum.models import PolicyModel
    from training import protocol_evaluation

    small = EvaluationProtocol(students=20, interactions=30)
    type(curriculum).objects.filter(pk=curriculum.pk).update(evaluation_protocol=small.to_dict())
    curriculum.refresh_from_db()
    v1 = make_policy(curriculum, recall=0.5, fallback=None)
    v2 = make_policy(curriculum, recall=0.6, fallback=None)
    PolicyModel.objects.filter(pk=v1.pk).update(config={"concept_keys": ["c0", "c1", "c2"]})
    PolicyModel.objects.filter(pk=v2.pk).update(config={"concept_keys": [f"c{i}" for i in range(5)]})
    gate.promote_policy(policy=v1, force=True, reason="three concepts")
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert gate.promotion_gate(candidate=v2, active=v1).fallback_needs_evaluation
    phases = []
    found = protocol_evaluation.evaluate_under_protocol(policy=v2, on_progress=lambda stage, *_: phases.append(stage))
    assert found["results"]["dt"]["mean"] == 0.6 and phases == ["evaluating the fallback"]
    curriculum.refresh_from_db()
    assert selectors.fallback_evaluation(curriculum=curriculum, protocol=small, num_concepts=5) is not None
    v2.refresh_from_db()
    assert not gate.promotion_gate(candidate=v2, active=v1).fallback_needs_evaluation
