"""The round-robin fallback rule (Curriculum.fallback_rule): with no active version the API answers the concepts in
turn by the learner's number of reviews, says ``fallback:round_robin``, explores around it with the logged
propensity, and an experiment's control arm then serves it."""
import datetime as dt
import json

import numpy as np
import pytest

from curriculum.experiments.exploration import seed_draws
from curriculum.experiments.services import create_experiment, start_experiment

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_round_robin_serves_the_concepts_in_turn(api_client, make_curriculum):
    demo = make_curriculum("demo", concepts=4)
    type(demo).objects.filter(pk=demo.pk).update(fallback_rule="round_robin")
    served = []
    for step in range(9):
        at = T0 + dt.timedelta(minutes=10 * step)
        rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1",
                                                           "at": at.isoformat()}).json()
        assert rec["strategy"] == "fallback:round_robin" and rec["policy"] is None
        served.append(rec["concept"])
        assert post(api_client, "/api/v1/reviews", {"curriculum": "demo", "learner": "u1", "concept": rec["concept"],
                                                    "correct": step % 3 > 0,
                                                    "reviewed_at": (at + dt.timedelta(minutes=1)).isoformat()}
                    ).status_code == 201
    assert served == ["c0", "c1", "c2", "c3", "c0", "c1", "c2", "c3", "c0"]
    # among candidates: the turn is the learner's 9 reviews mod 2 over c1, c3 in position order
    rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1", "candidates": ["c3", "c1"],
                                                       "at": (T0 + dt.timedelta(hours=3)).isoformat()}).json()
    assert rec["concept"] == "c3"


@pytest.mark.parametrize("rule, parameters, turn_probability", [
    ("epsilon_greedy", {"exploration_epsilon": 0.4}, 0.6 + 0.4 / 4),
    ("softmax", {"exploration_temperature": 1.0}, np.e / (np.e + 3)),
])
def test_round_robin_explores_with_the_logged_propensity(api_client, make_curriculum, rule, parameters,
                                                    turn_probability):
    from curriculum.models import RecommendationLog

    demo = make_curriculum("demo", concepts=4)
    type(demo).objects.filter(pk=demo.pk).update(fallback_rule="round_robin", exploration=rule, **parameters)
    seed_draws(3)
    try:
        answers = post(api_client, "/api/v1/recommendations/batch", {
            "curriculum": "demo", "learners": [f"u{i}" for i in range(1000)], "at": T0.isoformat()}).json()["results"]
    finally:
        seed_draws(None)
    chosen = np.array([a["concept"] == "c0" for a in answers])  # new learners: c0's turn
    assert abs(chosen.mean() - turn_probability) < 4 * np.sqrt(turn_probability * (1 - turn_probability) / 1000)
    logged = dict(RecommendationLog.objects.values_list("learner", "propensity"))
    other = (1 - turn_probability) / 3
    for a, turn in zip(answers, chosen):
        assert logged[a["learner"]] == pytest.approx(turn_probability if turn else other)


def test_an_experiment_of_a_version_against_round_robin(api_client, make_curriculum, make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    type(demo).objects.filter(pk=demo.pk).update(fallback_rule="round_robin")
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="DT vs round robin",
                                                               candidates=[make_real_policy(demo, seed=1)]))
    answers = post(api_client, "/api/v1/recommendations/batch", {
        "curriculum": "demo", "learners": [f"u{i}" for i in range(200)], "at": T0.isoformat()}).json()["results"]
    arms = {a.label: a for a in experiment.arms.all()}
    assert arms["A"].policy_id is None  # the control: the curriculum's fallback rule
    strategies = {a["strategy"] for a in answers}
    assert strategies == {"fallback:round_robin", "policy"}
    assert {a["concept"] for a in answers if a["strategy"] == "fallback:round_robin"} == {"c0"}


def test_the_rules_a_curriculum_may_choose_are_serving_s_and_the_evaluation_s():
    from curriculum import serving
    from curriculum.evaluation_protocol import FALLBACK_POLICY, FALLBACK_RULES, LIFT_BASELINES
    from curriculum.models import Curriculum

    choices = [value for value, _ in Curriculum._meta.get_field("fallback_rule").choices]
    assert tuple(choices) == FALLBACK_RULES == (serving.FALLBACK, serving.ROUND_ROBIN)
    assert Curriculum._meta.get_field("fallback_rule").default == FALLBACK_POLICY
    assert set(FALLBACK_RULES) <= set(LIFT_BASELINES)  # each one is a baseline every evaluation reports
