"""Experiments: start and stop under the one-running constraint, learners served by their sticky arm (split) or by
the control with the candidate's choice logged (shadow), and promoting the winner through the promotion service."""
import json

import pytest
from django.db import IntegrityError, transaction

from curriculum.experiments.services import (
    ExperimentError, create_experiment, promote_winner, start_experiment, stop_experiment,
)
from curriculum.models import Experiment, PromotionEvent, RecommendationLog
from curriculum.services import promote_policy


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


@pytest.fixture
def versions(demo, make_real_policy):
    control = make_real_policy(demo, seed=1, recall=0.5)
    promote_policy(policy=control, reason="test")
    return control, make_real_policy(demo, seed=2, recall=0.6)


def recommend(client, learner):
    return client.post("/api/v1/recommendations", data=json.dumps({"curriculum": "demo", "learner": learner}),
                       content_type="application/json").json()


def test_a_split_serves_each_learner_by_its_arm_for_good(api_client, demo, versions):
    control, candidate = versions
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="v2 vs v1", candidates=[candidate]))

    seen = {}
    for round_ in range(2):
        for i in range(40):
            seen.setdefault(f"u{i}", set()).add(recommend(api_client, f"u{i}")["policy"]["version"])
    assert all(len(v) == 1 for v in seen.values())  # sticky
    assert {v.pop() for v in seen.values()} == {control.version, candidate.version}
    arms = dict(experiment.arms.values_list("id", "policy_id"))
    for row in RecommendationLog.objects.all():
        assert row.served and arms[row.arm_id] == row.policy_id


def test_shadow_mode_serves_the_control_and_logs_the_candidates_choice(api_client, demo, versions):
    control, candidate = versions
    start_experiment(experiment=create_experiment(curriculum=demo, name="shadow", candidates=[candidate], mode="shadow"))

    answer = recommend(api_client, "u1")

    assert answer["policy"] == {"version": control.version}
    served, shadow = (RecommendationLog.objects.get(served=flag) for flag in (True, False))
    assert str(served.id) == answer["recommendation_id"] and served.policy_id == control.pk
    assert shadow.policy_id == candidate.pk and shadow.arm.label == "B"


def test_after_stopping_the_active_version_serves_everyone(api_client, demo, versions):
    control, candidate = versions
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x", candidates=[candidate],
                                                               traffic=[1, 99]))
    stop_experiment(experiment=experiment)

    assert {recommend(api_client, f"u{i}")["policy"]["version"] for i in range(20)} == {control.version}
    assert not RecommendationLog.objects.filter(arm__isnull=False).exists()


def test_one_running_experiment_per_curriculum(demo, versions):
    _, candidate = versions
    first = start_experiment(experiment=create_experiment(curriculum=demo, name="one", candidates=[candidate]))
    second = create_experiment(curriculum=demo, name="two", candidates=[candidate])

    with pytest.raises(ExperimentError, match="another experiment"):
        start_experiment(experiment=second)
    with pytest.raises(IntegrityError), transaction.atomic():  # the database says so too
        Experiment.objects.filter(pk=second.pk).update(status="running")
    assert first.status == "running"


@pytest.mark.parametrize("kwargs, field", [
    ({"candidates": []}, "candidates"), ({"traffic": [50, 40]}, "traffic"), ({"traffic": [100, 0]}, "traffic"),
    ({"name": " "}, "name"), ({"mode": "canary"}, "mode"),
])
def test_a_bad_experiment_is_refused_naming_the_field(demo, versions, kwargs, field):
    _, candidate = versions
    with pytest.raises(ExperimentError, match=f"^{field}:"):
        create_experiment(curriculum=demo, **{"name": "x", "candidates": [candidate], **kwargs})


def test_promoting_the_winner_stops_the_experiment_and_the_audit_event_links_it(demo, versions, admin_user):
    control, candidate = versions
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x", candidates=[candidate]))
    winner = experiment.arms.get(label="B")

    event = promote_winner(experiment=experiment, arm=winner, actor=admin_user, reason="B recalls more")

    assert (event.experiment_id, event.to_version, event.from_version) == (experiment.pk, candidate.version, control.version)
    assert Experiment.objects.get(pk=experiment.pk).status == "stopped"
    with pytest.raises(ExperimentError, match="control"):
        promote_winner(experiment=experiment, arm=experiment.arms.get(label="A"), actor=admin_user, reason="r")
    assert PromotionEvent.objects.filter(experiment=experiment).count() == 1
