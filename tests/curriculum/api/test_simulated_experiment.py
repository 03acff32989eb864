"""A simulated experiment through the API, the built-in students answering: the fallback (control, no active version)
against a Decision Transformer version, both exploring epsilon-greedily (epsilon 0.8, so that no concept is ever
logged with a propensity below 0.16). The outcomes detect the difference between the two (the DT arm ahead), and the
doubly robust estimate of the DT version from the control's exploring log alone agrees with the DT arm's own observed
value: their difference lies within 3.29 standard errors of the two combined (a 0.1% two-sided test per seed).

Why 1,200 learners: the arms come from a hash of the experiment's id, which the database assigns (it differs between
SQLite and PostgreSQL and with the tests run before); at 400 learners seed 2 missed the detection on 3 of 8 other
ids (B - A +0.029 [-0.004, 0.062] at worst). At 1,200, on seeds 1-5 with three other ids each (15 runs), every
difference was detected (lowest bound +0.025) and the largest disagreement was 2.08 combined standard errors. At 1.96
the agreement check alone would fail about one run in four over five seeds: a test of the estimator's bias, not of luck.

Why epsilon 0.8: with 4 decisions per learner the per-decision weights multiply; at epsilon 0.5 a ratio reaches
0.6 / 0.1 = 6 per decision and the effective sample size fell to about a tenth of the learners (docs/operations.md,
"Off-policy estimates"); at 0.8 it is 0.36 / 0.16 = 2.25 at most and the ESS is about half the learners.
Why not the issue's literal "the DR point lies in the on-policy interval": that interval covers the true value 95% of
the time only, and the DR point has its own error, so even an exact estimator misses it more often than 5%; the
measured miss rate is in docs/operations.md. Seeds 1-5 (cohort and draws) are fixed here, not chosen."""
import datetime as dt
import json
import math

import numpy as np
import pytest

from curriculum.experiments.exploration import seed_draws
from curriculum.experiments.logged_estimates import logged_estimates
from curriculum.experiments.outcomes import Z95, experiment_outcomes
from curriculum.experiments.services import create_experiment, start_experiment
from curriculum.models import Experiment
from curriculum.reviews.store import MAX_BATCH
from curriculum.serving import MAX_BATCH_LEARNERS
from training.rl.students.builtin import Cohort

STUDENTS, STEPS, CONCEPTS, EPSILON = 1200, 4, 5, 0.8
# A two-sided 0.1% test of agreement per seed (five seeds: a false alarm in about 1 run in 200)
Z_AGREE = 3.29
GAP_S = 600.0  # ten minutes between a learner's decisions: within one session, where the two policies differ


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def draws_from():
    """Exploration's draws in this thread (the test client serves in it) from a given seed, then from the system."""
    yield seed_draws
    seed_draws(None)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_simulated_experiment_detects_the_difference_and_dr_agrees_with_the_on_policy_value(
        api_client, make_curriculum, make_real_policy, draws_from, seed):
    draws_from(seed)
    demo = make_curriculum("demo", concepts=CONCEPTS)
    candidate = make_real_policy(demo, seed=1)
    type(demo).objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=EPSILON)
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="DT vs fallback",
                                                               candidates=[candidate]))
    cohort = Cohort(num_students=STUDENTS, num_concepts=CONCEPTS, interactions=STEPS, seed=seed)
    start = float(cohort.schedule().min())
    Experiment.objects.filter(pk=experiment.pk).update(
        started_at=dt.datetime.fromtimestamp(start - 1, tz=dt.timezone.utc))
    experiment.refresh_from_db()

    learners = [f"s{s}" for s in range(STUDENTS)]
    for k in range(STEPS):
        now = start + k * GAP_S
        at = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).isoformat()
        answers = [answer for first in range(0, STUDENTS, MAX_BATCH_LEARNERS)  # the batch endpoint's limit
                   for answer in post(api_client, "/api/v1/recommendations/batch", {
                       "curriculum": "demo", "learners": learners[first:first + MAX_BATCH_LEARNERS],
                       "at": at}).json()["results"]]
        outcome = cohort.review(np.array([int(a["concept"][1:]) for a in answers]), np.full(STUDENTS, now))
        reviews = [{"curriculum": "demo", "learner": a["learner"], "concept": a["concept"],
                    "correct": bool(outcome.correct[s]), "grade": int(outcome.grade[s]),
                    "recommendation_id": a["recommendation_id"],
                    "reviewed_at": dt.datetime.fromtimestamp(now + 1, tz=dt.timezone.utc).isoformat()}
                   for s, a in enumerate(answers)]
        for first in range(0, STUDENTS, MAX_BATCH):  # the review endpoint's batch limit
            assert post(api_client, "/api/v1/reviews", reviews[first:first + MAX_BATCH]).status_code == 201

    (difference,) = experiment_outcomes(experiment=experiment).differences
    assert difference.ci95[0] > 0, difference.sentence  # detected at the 95% level, the DT arm ahead

    control = experiment.arms.get(label="A")
    candidate.refresh_from_db()
    from_control = logged_estimates(policy=candidate, arm=control, since=experiment.started_at, bootstrap_samples=1000,
                                    max_decisions=STUDENTS * STEPS)
    observed = logged_estimates(policy=candidate, arm=experiment.arms.get(label="B"), since=experiment.started_at,
                                max_decisions=STUDENTS * STEPS).on_policy
    dr = from_control.estimates["dr"]
    assert from_control.learners > STUDENTS / 3 and observed.n > STUDENTS / 3
    assert dr.ess > from_control.learners / 4, dr  # the exploration keeps the weights usable
    # standard errors from the 95% intervals' half-widths (the DR's is a percentile bootstrap: about normal here)
    se = math.hypot((dr.ci95[1] - dr.ci95[0]) / (2 * Z95), (observed.ci95[1] - observed.ci95[0]) / (2 * Z95))
    assert abs(dr.value - observed.mean) <= Z_AGREE * se, (dr, observed)
    assert dr.ci95[1] - dr.ci95[0] < 0.5  # informative: returns over 4 decisions lie in [0, 4]
