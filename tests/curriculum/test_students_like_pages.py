"""'Students like the curriculum's own' on the version's admin page and the orchestrator: read from the evaluation's
``students_like`` block and its ``families["fitted"]`` paired differences."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from curriculum.evaluation_protocol import encoder_fitted_to, students_like
from curriculum.models import PolicyModel

pytestmark = pytest.mark.django_db

ORCHESTRATOR = "/admin/curriculum-ops/orchestrator/"


def like_block(dt: float = 0.62) -> dict:
    return {"dt": {"mean": dt, "ci95": [dt - 0.02, dt + 0.02]},
            "random": {"mean": 0.40, "ci95": [0.38, 0.42]},
            "lowest_recall": {"mean": 0.55, "ci95": [0.53, 0.57]},
            "oracle": {"mean": 0.70, "ci95": [0.68, 0.72]}}


def test_students_like_reads_the_block_dt_first_then_best_mean():
    like = students_like({"results": {}, "students_like": like_block()})
    assert [row["name"] for row in like["rows"]] == ["dt", "oracle", "lowest_recall", "random"]
    assert like["dt"] == pytest.approx(0.62)
    # without a family block: the independent interval (half-widths 0.02 and 0.02 combined in quadrature)
    random = like["lift"]["random"]
    assert random["paired"] is False and random["mean"] == pytest.approx(0.22)
    assert random["ci95"] == pytest.approx([0.22 - 0.02 * 2 ** 0.5, 0.22 + 0.02 * 2 ** 0.5])
    assert "oracle" not in like["lift"] and like["gap_closed"] is None


def test_students_like_takes_the_paired_differences_of_the_fitted_family():
    metrics = {"students_like": like_block(), "families": {"fitted": {
        "paired": {"random": {"mean": 0.21, "ci95": [0.205, 0.215]}}, "gap_closed": 0.47, "best_behaviour": "random"}}}
    like = students_like(metrics)
    assert like["lift"]["random"] == {"mean": 0.21, "ci95": [0.205, 0.215], "paired": True}
    assert like["lift"]["lowest_recall"]["paired"] is False
    assert like["gap_closed"] == pytest.approx(0.47) and like["best_behaviour"] == "random"


@pytest.mark.parametrize("metrics", [None, {}, {"results": {"dt": {"mean": 0.5}}}, {"students_like": "x"},
                                     {"students_like": {"dt": {"ci95": [0, 1]}}}])
def test_students_like_is_none_without_a_readable_block(metrics):
    assert students_like(metrics) is None


def test_students_like_says_what_its_students_were_fitted_to():
    # a review log: students like the curriculum's own
    like = students_like({"students_like": like_block(), "students_like_fitted_to": "review_log"})
    assert (like["fitted_to"], like["heading"]) == ("review_log", "Students like the curriculum's own")
    # synthetic training: the encoder (and so the students) fitted to the simulated pilot, not to any review log
    like = students_like({"students_like": like_block(), "students_like_fitted_to": "simulated_pilot"})
    assert (like["fitted_to"], like["heading"]) == ("simulated_pilot", "Students like the training cohort")
    assert "simulated pilot" in like["detail"] and "not to a review log" in like["detail"]
    # an evaluation that does not say: the version's record (fitted_to), else neither claim
    assert students_like({"students_like": like_block()}, fitted_to="simulated_pilot")["fitted_to"] == "simulated_pilot"
    unknown = students_like({"students_like": like_block()})
    assert unknown["fitted_to"] is None and "curriculum's own" not in unknown["heading"]
    assert "does not record which" in unknown["detail"]


def test_a_versions_encoder_fit_is_its_configs_record_else_its_training_runs_data_source():
    class Run:
        data_source = "synthetic"

    class Version:
        config = {"extra": {"encoder_fitted_to": "review_log"}}
        training_run = Run()

    assert encoder_fitted_to(Version()) == "review_log"  # the record wins
    Version.config = {"extra": {"loss_history": [1.0]}}
    assert encoder_fitted_to(Version()) == "simulated_pilot"  # before the record: the run's synthetic data
    Run.data_source = "dataset"
    assert encoder_fitted_to(Version()) == "review_log"
    Version.training_run = None
    assert encoder_fitted_to(Version()) is None  # a command-line version before the record: unknown


@pytest.fixture
def promoter_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="promoter", password="pw-promoter-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["promote_policymodel", "view_policymodel"]))
    client.force_login(user)
    return client


def with_students_like(policy: PolicyModel, dt: float = 0.62, fitted_to: str | None = "review_log") -> PolicyModel:
    # as training.pipeline.evaluate_export writes it: what the students' FSRS-6 was fitted to (None: an evaluation
    # from before the record)
    policy.metrics = {**policy.metrics, "students_like": like_block(dt)}
    if fitted_to is not None:
        policy.metrics["students_like_fitted_to"] = fitted_to
    PolicyModel.objects.filter(pk=policy.pk).update(metrics=policy.metrics)
    return policy


def test_the_orchestrator_shows_students_like_under_the_protocol(promoter_client, make_curriculum, make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    fitted = with_students_like(make_policy(curriculum, recall=0.5), dt=0.6312)
    plain = make_policy(curriculum, recall=0.4)
    html = promoter_client.get(ORCHESTRATOR).content.decode()
    start = html.index(f'id="students-like-algebra-{fitted.version}"')
    shown = html[start:start + 2500]
    assert "0.6312" in shown and "lowest_recall" in shown
    assert "not comparable with other versions" not in shown  # its evaluation under the protocol carries it
    start = html.index(f'id="students-like-algebra-{plain.version}"')
    assert "Not evaluated on students like the curriculum" in html[start:start + 600]


def test_the_version_page_shows_students_like(promoter_client, make_curriculum, make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    policy = with_students_like(make_policy(curriculum, recall=0.5), dt=0.6543)
    html = promoter_client.get(reverse("admin:curriculum_policymodel_change", args=[policy.pk])).content.decode()
    assert 'id="students-like-algebra-1"' in html and "0.6543" in html
    assert "Students like the curriculum" in html


def test_a_training_time_only_evaluation_is_said_not_comparable(promoter_client, make_curriculum, make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    policy = make_policy(curriculum, recall=0.5, protocol={"students": 7, "seed": 3, "interactions": 20,
                                                             "horizon_s": 86400.0}, before_protocols=True)
    with_students_like(policy, dt=0.5876)
    html = promoter_client.get(ORCHESTRATOR).content.decode()
    start = html.index('id="students-like-algebra-1"')
    shown = html[start:start + 1500]
    assert "0.5876" in shown and "not comparable with other versions" in shown


def test_the_promotion_confirmation_shows_students_like_for_both_versions(promoter_client, make_curriculum,
                                                                          make_policy):
    curriculum = make_curriculum("algebra", concepts=3)
    active = with_students_like(make_policy(curriculum, recall=0.5), dt=0.6111)
    PolicyModel.objects.filter(pk=active.pk).update(status=PolicyModel.Status.ACTIVE)
    candidate = with_students_like(make_policy(curriculum, recall=0.55), dt=0.6789)
    html = promoter_client.get(reverse("curriculum:orchestrator-promote", args=[candidate.pk])).content.decode()
    to = html[html.index('id="confirm-to"'):]
    shown = to[to.index(f'id="students-like-algebra-{candidate.version}"'):][:2500]
    assert "0.6789" in shown and "lowest_recall" in shown
    now = html[html.index('id="confirm-from"'):html.index('id="confirm-to"')]
    assert f'id="students-like-algebra-{active.version}"' in now and "0.6111" in now


def test_a_synthetic_version_says_its_fitted_students_are_like_the_training_cohort(promoter_client, make_curriculum,
                                                                                   make_policy):
    """The demo (synthetic students; the curriculum has no review log): its encoder's FSRS-6 was fitted to the simulated
    pilot, so its fitted students are like the training cohort, not like the curriculum's own (FSRS-6 fitted to its
    review log), on the orchestrator and on the version's page alike."""
    curriculum = make_curriculum("demo", concepts=3)
    policy = with_students_like(make_policy(curriculum, recall=0.5), dt=0.6422, fitted_to="simulated_pilot")
    pages = [promoter_client.get(ORCHESTRATOR).content.decode(),
             promoter_client.get(reverse("admin:curriculum_policymodel_change", args=[policy.pk])).content.decode()]
    for html in pages:
        start = html.index(f'id="students-like-demo-{policy.version}"')
        shown = html[start:start + 2500]
        assert "0.6422" in shown and "Students like the training cohort" in shown
        assert "simulated pilot" in shown and "curriculum&#x27;s own" not in shown and "curriculum's own" not in shown


def test_a_version_evaluated_before_the_record_is_named_by_its_training_run(promoter_client, make_curriculum,
                                                                           make_policy):
    from training.models import TrainingRun

    curriculum = make_curriculum("algebra", concepts=3)
    synthetic = with_students_like(make_policy(curriculum, recall=0.5), dt=0.6111, fitted_to=None)
    TrainingRun.objects.create(curriculum=curriculum, concepts=3, status="succeeded", policy=synthetic,
                               data_source="synthetic")
    unknown = with_students_like(make_policy(curriculum, recall=0.5), dt=0.6222, fitted_to=None)
    html = promoter_client.get(ORCHESTRATOR).content.decode()
    shown = html[html.index(f'id="students-like-algebra-{synthetic.version}"'):][:2500]
    assert "0.6111" in shown and "Students like the training cohort" in shown
    shown = html[html.index(f'id="students-like-algebra-{unknown.version}"'):][:2500]
    assert "0.6222" in shown and "does not record which" in shown and "Students like the curriculum" not in shown
