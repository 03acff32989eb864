"""A simulated experiment through the API, the built-in students answering: the fallback (control, no active version)
against a Decision Transformer version, both exploring epsilon-greedily (epsilon 0.8, so that no concept is ever
logged with a propensity below 0.16). Issue #24's condition, literally: the outcomes detect the difference between
the two (the DT arm ahead, at the 95% level), and the doubly robust estimate of the DT version from the control's
exploring log alone lies within the DT arm's own on-policy 95% interval.

The design (a power analysis; the measurements are in bench/README.md, ``experiment_simulation.py``):

* Why it can hold: the DR point and the observed mean are independent estimates of the same value, so the DR point
  lies in the observed interval with probability about P(|Z| < 1.96 / sqrt(1 + r^2)), r the ratio of their
  standard errors: under 95% whatever the sizes, about 80% at r = 1. Two levers make r small. The direct method:
  the memory model plus the log's mean reward-to-go after each step (``logged_estimates``' default,
  ``off_policy.mean_reward_after``) halves DR's spread per learner (about 0.61 against 1.26 with the memory model
  alone, in returns over 4 decisions), to about the observed return's own (0.66). The split: 85% of the traffic
  on the control, whose log the estimate reads, 15% on the DT arm: r about sqrt(300 / 1,700) = 0.4, P about 0.93.
* Detection: 300 learners in the DT arm, 1,700 in the control: the difference (0.045 to 0.078 on seeds 1-7) has a
  standard error of about 0.010.
* Reproducible on every database: a learner's arm is a hash of the experiment's id, which the database assigns (it
  differs between SQLite and PostgreSQL and with the tests run before). The students are exchangeable, so the
  cohort's first 1,700 students are given to the first 1,700 learner ids the hash puts in the control and the next
  300 to the first 300 it puts in the DT arm: every run of a seed serves the same students by the same policies
  with the same draws, whatever the id (the DR point and both normal intervals do not depend on it).
* Seeds 1-4 are the first four, not chosen after the fact (four for the time: about 25 s of CPU each, so the test
  is marked slow); seeds 1-12, measured with this code, met the condition on 11 (seed 9 missed it: the DT arm's
  students did better than expected, DR 2.5 observed standard errors below their mean) and detected the difference
  on all 12 (lowest bound +0.025); bench/README.md has the figures.
"""
import datetime as dt
import json

import numpy as np
import pytest

from curriculum.experiments.assignment import assign
from curriculum.experiments.exploration import seed_draws
from curriculum.experiments.logged_estimates import logged_estimates
from curriculum.experiments.outcomes import experiment_outcomes
from curriculum.experiments.services import create_experiment, start_experiment
from curriculum.models import Experiment
from curriculum.reviews.store import MAX_BATCH
from curriculum.serving import MAX_BATCH_LEARNERS
from training.rl.students.builtin import Cohort

CONTROL, CANDIDATE, STEPS, CONCEPTS, EPSILON = 1700, 300, 4, 5, 0.8
TRAFFIC = [85, 15]  # percent: the control (whose exploring log estimates the DT), the DT arm
GAP_S = 600.0  # ten minutes between a learner's decisions: within one session, where the two policies differ

pytestmark = pytest.mark.slow  # 2,000 learners x 4 decisions through the API per seed (make test, not test-fast)


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def draws_from():
    """Exploration's draws in this thread (the test client serves in it) from a given seed, then from the system."""
    yield seed_draws
    seed_draws(None)


def learners_by_arm(experiment, sizes: dict[str, int]) -> list[str]:
    """The first ``sizes[label]`` learner ids ("s0", "s1"...) that the experiment's hash puts in each arm, the arms in
    label order: the cohort's students in that order (see the module)."""
    arms = list(experiment.arms.order_by("label"))
    weights = [a.traffic_percent for a in arms]
    found: dict[str, list[str]] = {a.label: [] for a in arms}
    j = 0
    while any(len(found[label]) < n for label, n in sizes.items()):
        learner = f"s{j}"
        label = arms[assign(experiment_id=experiment.pk, learner=learner, weights=weights)].label
        if len(found[label]) < sizes[label]:
            found[label].append(learner)
        j += 1
    return [learner for a in arms for learner in found[a.label]]


def run_experiment(api_client, make_curriculum, make_real_policy, *, seed: int):
    """Serve STEPS rounds to the learners through the batch endpoint, the built-in students answering; returns the
    experiment and the candidate version."""
    seed_draws(seed)
    demo = make_curriculum("demo", concepts=CONCEPTS)
    candidate = make_real_policy(demo, seed=1)
    type(demo).objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=EPSILON)
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="DT vs fallback",
                                                               candidates=[candidate], traffic=TRAFFIC))
    learners = learners_by_arm(experiment, {"A": CONTROL, "B": CANDIDATE})
    cohort = Cohort(num_students=len(learners), num_concepts=CONCEPTS, interactions=STEPS, seed=seed)
    start = float(cohort.schedule().min())
    Experiment.objects.filter(pk=experiment.pk).update(
        started_at=dt.datetime.fromtimestamp(start - 1, tz=dt.timezone.utc))
    experiment.refresh_from_db()
    for k in range(STEPS):
        now = start + k * GAP_S
        at = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).isoformat()
        answers = [answer for first in range(0, len(learners), MAX_BATCH_LEARNERS)  # the batch endpoint's limit
                   for answer in post(api_client, "/api/v1/recommendations/batch", {
                       "curriculum": "demo", "learners": learners[first:first + MAX_BATCH_LEARNERS],
                       "at": at}).json()["results"]]
        outcome = cohort.review(np.array([int(a["concept"][1:]) for a in answers]), np.full(len(learners), now))
        reviews = [{"curriculum": "demo", "learner": a["learner"], "concept": a["concept"],
                    "correct": bool(outcome.correct[s]), "grade": int(outcome.grade[s]),
                    "recommendation_id": a["recommendation_id"],
                    "reviewed_at": dt.datetime.fromtimestamp(now + 1, tz=dt.timezone.utc).isoformat()}
                   for s, a in enumerate(answers)]
        for first in range(0, len(reviews), MAX_BATCH):  # the review endpoint's batch limit
            assert post(api_client, "/api/v1/reviews", reviews[first:first + MAX_BATCH]).status_code == 201
    candidate.refresh_from_db()
    return experiment, candidate


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_simulated_experiment_detects_the_difference_and_dr_lies_in_the_on_policy_interval(
        api_client, make_curriculum, make_real_policy, draws_from, seed):
    experiment, candidate = run_experiment(api_client, make_curriculum, make_real_policy, seed=seed)

    (difference,) = experiment_outcomes(experiment=experiment).differences
    assert difference.ci95[0] > 0, difference.sentence  # detected at the 95% level, the DT arm ahead

    everything = (CONTROL + CANDIDATE) * STEPS
    from_control = logged_estimates(policy=candidate, arm=experiment.arms.get(label="A"), since=experiment.started_at,
                                    bootstrap_samples=200, max_decisions=everything)
    observed = logged_estimates(policy=candidate, arm=experiment.arms.get(label="B"), since=experiment.started_at,
                                max_decisions=everything, bootstrap_samples=100).on_policy
    dr = from_control.estimates["dr"]
    assert (from_control.learners, observed.n) == (CONTROL, CANDIDATE)
    assert dr.ess > from_control.learners / 4, dr  # the exploration keeps the weights usable
    assert observed.ci95[0] <= dr.value <= observed.ci95[1], (dr, observed)  # the condition
    assert dr.ci95[1] - dr.ci95[0] < observed.ci95[1] - observed.ci95[0]  # the larger log: the tighter estimate
