"""A simulated experiment through the API, the built-in students answering: the fallback (control, no active version)
against a Decision Transformer version, both exploring (epsilon-greedy). The outcomes detect the difference between
the two, and the doubly robust estimate of the DT version from the control's exploring log alone agrees with the DT
arm's own observed value: the observed mean lies in the estimate's 95% interval. (The estimate's point value need not
lie in the observed value's interval: with 4 decisions per learner and epsilon 0.5 the importance weights leave an
effective sample size near a tenth of the learners.)"""
import datetime as dt
import json

import numpy as np
import pytest

from curriculum.experiments.logged_estimates import logged_estimates
from curriculum.experiments.outcomes import experiment_outcomes
from curriculum.experiments.services import create_experiment, start_experiment
from curriculum.models import Experiment
from training.rl.students.builtin import Cohort

STUDENTS, STEPS = 160, 4


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_a_simulated_experiment_detects_the_difference_and_dr_agrees_with_the_on_policy_value(
        api_client, make_curriculum, make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    candidate = make_real_policy(demo, seed=1)
    type(demo).objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=0.5)
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="DT vs fallback",
                                                               candidates=[candidate]))
    cohort = Cohort(num_students=STUDENTS, num_concepts=5, interactions=STEPS, seed=11)
    times = cohort.schedule()
    Experiment.objects.filter(pk=experiment.pk).update(
        started_at=dt.datetime.fromtimestamp(times.min() - 1, tz=dt.timezone.utc))
    experiment.refresh_from_db()

    for k in range(STEPS):
        answers = [post(api_client, "/api/v1/recommendations", {
            "curriculum": "demo", "learner": f"s{s}",
            "at": dt.datetime.fromtimestamp(times[s, k], tz=dt.timezone.utc).isoformat()}).json() for s in range(STUDENTS)]
        outcome = cohort.review(np.array([int(a["concept"][1:]) for a in answers]), times[:, k])
        reviews = [{"curriculum": "demo", "learner": f"s{s}", "concept": a["concept"], "correct": bool(outcome.correct[s]),
                    "grade": int(outcome.grade[s]), "recommendation_id": a["recommendation_id"],
                    "reviewed_at": dt.datetime.fromtimestamp(times[s, k] + 1, tz=dt.timezone.utc).isoformat()}
                   for s, a in enumerate(answers)]
        assert post(api_client, "/api/v1/reviews", reviews).status_code == 201

    outcomes = experiment_outcomes(experiment=experiment)
    (difference,) = outcomes.differences
    assert difference.ci95[0] > 0 or difference.ci95[1] < 0, difference.sentence  # detected at the 95% level

    control = experiment.arms.get(label="A")
    candidate.refresh_from_db()
    from_control = logged_estimates(policy=candidate, arm=control, since=experiment.started_at, bootstrap_samples=1000)
    observed = logged_estimates(policy=candidate, arm=experiment.arms.get(label="B"), since=experiment.started_at).on_policy
    dr = from_control.estimates["dr"]
    assert from_control.learners > 40 and observed.n > 40
    assert dr.ci95[0] <= observed.mean <= dr.ci95[1], (dr, observed)
    assert dr.ci95[1] - dr.ci95[0] < 4  # informative: returns over 4 decisions lie in [0, 4]
