"""'Students like the curriculum's own' on the version's admin page and the orchestrator: read from the evaluation's
``students_like`` block and its ``families["fitted"]`` paired differences."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from curriculum.evaluation_protocol import students_like
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


@pytest.fixture
def promoter_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="promoter", password="pw-promoter-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["promote_policymodel", "view_policymodel"]))
    client.force_login(user)
    return client


def with_students_like(policy: PolicyModel, dt: float = 0.62) -> PolicyModel:
    policy.metrics = {**policy.metrics, "students_like": like_block(dt)}
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
