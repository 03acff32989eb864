"""Comparing versions: what differs (parameters, data size and snapshot, final loss), the loss curves overlaid, and
one evaluation axis scaled to the compared results; the orchestrator's compare page shows them."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from curriculum.models import PolicyModel
from training.comparison import MISSING, compare_versions, evaluation_range, final_loss, loss_curves
from training.models import Job, TrainingRun, TrajectoryExtractionJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def curriculum(make_curriculum):
    return make_curriculum("algebra", concepts=3)


def dataset(curriculum, *, version: int, rows: int) -> TrajectoryExtractionJob:
    return TrajectoryExtractionJob.objects.create(
        curriculum=curriculum, version=version, status=Job.Status.SUCCEEDED, rows_read=rows,
        finished_at=timezone.make_aware(dt.datetime(2026, 3, version, 9, 30, 15), dt.timezone.utc),
        statistics={"episodes": 10 * version})


def trained(policy: PolicyModel, *, data=None, losses=(1.2, 0.9), epochs=2, batch_size=64, episodes=40) -> PolicyModel:
    run = TrainingRun.objects.create(
        curriculum=policy.curriculum, policy=policy, status=Job.Status.SUCCEEDED, epochs=epochs, batch_size=batch_size,
        data_source=TrainingRun.DataSource.DATASET if data else TrainingRun.DataSource.SYNTHETIC, dataset=data,
        loss_history=list(losses), loss=losses[-1], loss_steps=[[i + 1, v] for i, v in enumerate(losses)])
    PolicyModel.objects.filter(pk=policy.pk).update(
        config={**policy.config, "hidden_dim": 128, "learning_rate": 1e-4},
        metrics={**policy.metrics, "training_data": {"episodes": episodes, "steps": 400, "concepts": 3}})
    return PolicyModel.objects.select_related("training_run__dataset").get(pk=run.policy_id)


def rows_by_name(rows):
    return {row.name: row.values for row in rows}


def test_only_what_differs_is_listed_and_the_rest_is_the_same(curriculum, make_policy):
    v1 = trained(make_policy(curriculum), data=dataset(curriculum, version=1, rows=500), epochs=2, losses=(1.2, 0.8123))
    v2 = trained(make_policy(curriculum), data=dataset(curriculum, version=2, rows=900), epochs=3,
                 losses=(1.1, 0.9, 0.7456), episodes=80)
    comparison = compare_versions(policies=[v1, v2])
    differs = rows_by_name(comparison.differences)
    assert differs["epochs"] == (2, 3)
    assert differs["reviews read"] == (500, 900)
    assert differs["episodes (learners)"] == (40, 80)
    assert differs["dataset snapshot"] == ("dataset v1, extracted 2026-03-01 09:30:15 UTC",
                                           "dataset v2, extracted 2026-03-02 09:30:15 UTC")
    assert differs["final training loss"] == (0.8123, 0.7456)
    same = rows_by_name(comparison.same)
    assert same["batch_size"] == (64, 64) and same["hidden_dim"] == (128, 128)
    assert "batch_size" not in differs and "epochs" not in same


def test_a_local_attention_window_against_full_attention_is_a_difference(curriculum, make_policy):
    # versions trained before 2026-12-07 (no key) attend to the whole context; today's default attends locally
    v1, v2 = trained(make_policy(curriculum)), trained(make_policy(curriculum))
    PolicyModel.objects.filter(pk=v2.pk).update(config={**v2.config, "attention_window": 30})
    v2.refresh_from_db()
    assert rows_by_name(compare_versions(policies=[v1, v2]).differences)["attention_window"] == ("full", 30)


def test_a_fact_one_version_lacks_is_a_difference(curriculum, make_policy):
    v1 = trained(make_policy(curriculum))
    v2 = make_policy(curriculum)  # registered from the command line: no run
    differs = rows_by_name(compare_versions(policies=[v1, v2]).differences)
    assert differs["final training loss"] == (0.9, MISSING)
    assert final_loss(v2) is None


def test_fewer_than_two_versions_are_refused(curriculum, make_policy):
    with pytest.raises(ValueError, match="two or more"):
        compare_versions(policies=[make_policy(curriculum)])


def test_loss_curves_are_overlaid_one_line_per_version(curriculum, make_policy):
    v1 = trained(make_policy(curriculum), losses=(1.2, 0.8))
    v2 = trained(make_policy(curriculum), losses=(1.1, 0.9, 0.7))
    svg = str(loss_curves([v1, v2]))
    assert svg.count('class="series"') == 2
    assert 'data-series="v1"' in svg and 'data-series="v2"' in svg and "optimiser step" in svg
    assert loss_curves([make_policy(curriculum), make_policy(curriculum)]) is None


def evaluation(dt_mean: float, random: float) -> dict:
    return {"results": {"dt": {"mean": dt_mean, "ci95": [dt_mean - 0.01, dt_mean + 0.01]},
                        "random": {"mean": random, "ci95": [random - 0.01, random + 0.01]}}}


def test_the_evaluation_axis_is_scaled_to_the_compared_results():
    low, high = evaluation_range([evaluation(0.62, 0.55), evaluation(0.60, 0.57), None])
    assert 0.5 <= low <= 0.54 and 0.63 <= high <= 0.7  # round ticks around 0.54 .. 0.63, not 0 .. 1
    assert evaluation_range([None, {}]) is None
    low, high = evaluation_range([{"results": {"dt": {"mean": 0.5}}}])
    assert low < 0.5 < high and high - low <= 0.05


def test_the_compare_page_shows_the_differences_and_shared_axis(client, django_user_model, curriculum, make_policy):
    user = django_user_model.objects.create_user(username="promoter", password="pw-promoter-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="promote_policymodel"))
    client.force_login(user)
    trained(make_policy(curriculum, recall=0.62), epochs=2, losses=(1.2, 0.8123))
    trained(make_policy(curriculum, recall=0.60), epochs=5, losses=(1.1, 0.7456))
    response = client.get(reverse("curriculum:orchestrator-compare", args=[curriculum.pk]) + "?v=1&v=2")
    html = response.content.decode()
    table = html[html.index('id="differences-table"'):html.index("</table>", html.index('id="differences-table"'))]
    assert "epochs" in table and "0.8123" in table and "0.7456" in table and "batch_size" not in table
    assert 'id="compare-loss"' in html and 'data-series="v2"' in html
    axis = response.context["comparison"].evaluation_range
    assert axis[0] > 0.0 and axis[1] < 1.0
    assert [tick["value"] for tick in response.context["entries"][0]["chart"]["ticks"]][0] == pytest.approx(axis[0])


def test_comparing_a_version_that_does_not_exist_says_which_on_the_orchestrator(client, django_user_model, curriculum,
                                                                                make_policy):
    # it was a bare "Not Found" page: the message built for it was never shown
    user = django_user_model.objects.create_user(username="promoter", password="pw-promoter-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="promote_policymodel"))
    client.force_login(user)
    trained(make_policy(curriculum, recall=0.62))
    response = client.get(reverse("curriculum:orchestrator-compare", args=[curriculum.pk]) + "?v=1&v=5&v=7",
                          follow=True)
    assert response.status_code == 200 and response.redirect_chain
    assert "Compare: algebra has no versions 5, 7." in [str(m) for m in response.context["messages"]]
