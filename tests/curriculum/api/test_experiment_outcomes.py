"""A simulated experiment through the API: learners of arm B answer the recommended concept right more often than
arm A's; the outcomes detect it, attributing each review to its recommendation by the recommendation_id sent back."""
import datetime as dt
import json
import random

import numpy as np
import pytest

from curriculum.experiments.assignment import sample
from curriculum.experiments.outcomes import experiment_outcomes
from curriculum.experiments.services import create_experiment, start_experiment
from curriculum.services import promote_policy

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_the_outcomes_detect_a_known_difference_between_arms(api_client, make_curriculum, make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    control = make_real_policy(demo, seed=1)
    promote_policy(policy=control, reason="test")
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x",
                                                               candidates=[make_real_policy(demo, seed=2)]))
    experiment.started_at = T0 - dt.timedelta(days=1)
    experiment.save(update_fields=["started_at"])
    rng = random.Random(5)
    for i in range(60):
        learner = f"u{i}"
        for step in range(4):
            at = T0 + dt.timedelta(hours=step)
            rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": learner,
                                                               "at": at.isoformat()}).json()
            p_correct = 0.9 if rec["policy"]["version"] == 2 else 0.5
            review = {"curriculum": "demo", "learner": learner, "concept": rec["concept"],
                      "correct": rng.random() < p_correct, "reviewed_at": (at + dt.timedelta(minutes=5)).isoformat(),
                      "recommendation_id": rec["recommendation_id"]}
            assert post(api_client, "/api/v1/reviews", review).status_code == 201

    outcomes = experiment_outcomes(experiment=experiment, now=T0 + dt.timedelta(days=1))

    a, b = outcomes.arms
    assert a.learners + b.learners == 60 and a.decisions + b.decisions == 240
    assert a.metrics["reviews"].mean == pytest.approx(4.0) and b.metrics["reviews"].mean == pytest.approx(4.0)
    assert a.metrics["recall_next"].mean == pytest.approx(0.5, abs=0.15)
    assert b.metrics["recall_next"].mean == pytest.approx(0.9, abs=0.1)
    (diff,) = outcomes.differences
    assert diff.ci95[0] > 0 and diff.sentence.startswith("B is ahead of A by")
    assert 0 < b.metrics["horizon_recall"].mean < 1
    assert a.timeline and a.timeline[-1][1].n == a.metrics["recall_next"].n
    assert outcomes.to_dict()["differences"][0]["summary"] == diff.sentence


def test_the_timeline_counts_a_review_on_its_day_even_when_it_carries_the_recommendation_id(api_client, make_curriculum,
                                                                                             make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x",
                                                               candidates=[make_real_policy(demo, seed=2)]))
    experiment.started_at = T0
    experiment.save(update_fields=["started_at"])
    for learner in ("with-id", "without-id"):
        rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": learner,
                                                           "at": (T0 + dt.timedelta(hours=1)).isoformat()}).json()
        review = {"curriculum": "demo", "learner": learner, "concept": rec["concept"], "correct": True,
                  "reviewed_at": (T0 + dt.timedelta(days=2)).isoformat()}  # on the third day
        if learner == "with-id":
            review["recommendation_id"] = rec["recommendation_id"]
        assert post(api_client, "/api/v1/reviews", review).status_code == 201

    outcomes = experiment_outcomes(experiment=experiment, now=T0 + dt.timedelta(days=3))

    counted = [[m.n for _, m in arm.timeline] for arm in outcomes.arms]
    # each learner's outcome first counts at the end of the third day, whichever arm served it
    assert [sum(column) for column in zip(*counted)][:4] == [0, 0, 2, 2]


def test_logged_estimates_of_a_version_from_another_versions_exploring_log(api_client, make_curriculum, make_real_policy):
    from curriculum.experiments.logged_estimates import logged_estimates

    demo = make_curriculum("demo", concepts=5)
    logging_version = make_real_policy(demo, seed=1)
    promote_policy(policy=logging_version, reason="test")
    target = make_real_policy(demo, seed=2)
    type(demo).objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=0.5)
    rng = random.Random(3)
    for i in range(30):
        for step in range(3):
            at = T0 + dt.timedelta(hours=step)
            rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": f"u{i}",
                                                               "at": at.isoformat()}).json()
            post(api_client, "/api/v1/reviews", {
                "curriculum": "demo", "learner": f"u{i}", "concept": rec["concept"], "correct": rng.random() < 0.7,
                "reviewed_at": (at + dt.timedelta(minutes=5)).isoformat(), "recommendation_id": rec["recommendation_id"]})
    demo.refresh_from_db()
    target.refresh_from_db()

    result = logged_estimates(policy=target)

    assert (result.decisions, result.learners, result.error) == (90, 30, "")
    assert set(result.estimates) == {"ips", "snips", "pdis", "dr"}
    for estimate in result.estimates.values():
        assert estimate.ci95[0] <= estimate.value <= estimate.ci95[1] and 0 < estimate.ess <= 30
    # every reward is 0 or 1 over 3 decisions: SNIPS is a weighted mean of returns in [0, 3]
    assert 0 <= result.estimates["snips"].value <= 3
    assert result.on_policy is None  # the target served nobody
    logging_version.refresh_from_db()
    own = logged_estimates(policy=logging_version)
    assert own.on_policy is not None and own.on_policy.n == 30


def test_an_argmax_log_the_version_never_agrees_with_gives_the_reason_not_an_error(api_client, make_curriculum,
                                                                                   make_real_policy, monkeypatch):
    from curriculum.experiments import logged_estimates as module
    from curriculum.experiments.logged_estimates import logged_estimates

    demo = make_curriculum("demo", concepts=5)
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    target = make_real_policy(demo, seed=2)
    for i in range(5):
        rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": f"u{i}",
                                                           "at": T0.isoformat()}).json()
        post(api_client, "/api/v1/reviews", {"curriculum": "demo", "learner": f"u{i}", "concept": rec["concept"],
                                             "correct": True, "recommendation_id": rec["recommendation_id"],
                                             "reviewed_at": (T0 + dt.timedelta(minutes=1)).isoformat()})
    real = module._target
    # the version puts probability 0 on every logged concept: every episode weight is 0
    monkeypatch.setattr(module, "_target", lambda *a, **k: (np.zeros(5), *real(*a, **k)[1:]))

    result = logged_estimates(policy=target)

    assert result.decisions == 5 and "snips" not in result.estimates and result.error.startswith("snips:")
    assert result.estimates["ips"].value == 0.0 and set(result.estimates) == {"ips", "pdis", "dr"}


def test_outcomes_read_at_most_the_cap_of_learners_per_arm_and_count_everything_in_the_database(
        api_client, make_curriculum, make_real_policy):
    from curriculum.models import Learner, ReviewLog

    demo = make_curriculum("demo", concepts=5)
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x",
                                                               candidates=[make_real_policy(demo, seed=2)]))
    experiment.started_at = T0 - dt.timedelta(days=1)
    experiment.save(update_fields=["started_at"])
    rng = random.Random(7)
    learners = [f"u{i:02d}" for i in range(30)]
    for step in range(3):
        at = T0 + dt.timedelta(hours=step)
        answers = post(api_client, "/api/v1/recommendations/batch", {"curriculum": "demo", "learners": learners,
                                                                     "at": at.isoformat()}).json()["results"]
        assert post(api_client, "/api/v1/reviews", [
            {"curriculum": "demo", "learner": a["learner"], "concept": a["concept"], "correct": rng.random() < 0.6,
             "reviewed_at": (at + dt.timedelta(minutes=5)).isoformat(), "recommendation_id": a["recommendation_id"]}
            for a in answers]).status_code == 201

    full = experiment_outcomes(experiment=experiment, now=T0 + dt.timedelta(days=1))
    capped = experiment_outcomes(experiment=experiment, now=T0 + dt.timedelta(days=1), max_learners_per_arm=4)

    assert sum(a.learners for a in full.arms) == 30 and sum(a.decisions for a in full.arms) == 90
    for whole, part in zip(full.arms, capped.arms):
        # the counts are the whole arm's, the metrics a uniform sample's of 4 learners (seeded by the experiment)
        assert (part.learners, part.decisions, part.shadow_decisions) == (whole.learners, whole.decisions, 0)
        assert whole.metrics["recall_next"].n == whole.learners > 4
        assert part.metrics["recall_next"].n == part.metrics["reviews"].n == 4
        arm_learners = sample(set(experiment.arms.get(pk=part.arm_id).recommendations.values_list(
            "learner", flat=True)), 4, seed=experiment.pk)
        ids = Learner.objects.filter(external_id__in=arm_learners).values_list("id", flat=True)
        per_learner = [np.mean([r.correct for r in ReviewLog.objects.filter(learner_id=i)]) for i in ids]
        assert part.metrics["recall_next"].mean == pytest.approx(float(np.mean(per_learner)))
    with pytest.raises(ValueError, match="max_learners_per_arm"):
        experiment_outcomes(experiment=experiment, max_learners_per_arm=1)


def _serve_and_answer(api_client, learners, *, steps, correct):
    """Every learner asks for a concept ``steps`` times an hour apart and answers it; ``correct(learner)``."""
    for step in range(steps):
        at = T0 + dt.timedelta(hours=step)
        answers = post(api_client, "/api/v1/recommendations/batch", {"curriculum": "demo", "learners": learners,
                                                                     "at": at.isoformat()}).json()["results"]
        assert post(api_client, "/api/v1/reviews", [
            {"curriculum": "demo", "learner": a["learner"], "concept": a["concept"], "correct": correct(a["learner"]),
             "reviewed_at": (at + dt.timedelta(minutes=5)).isoformat(), "recommendation_id": a["recommendation_id"]}
            for a in answers]).status_code == 201


def test_capped_outcomes_are_a_uniform_sample_not_the_first_learners_by_id(api_client, make_curriculum,
                                                                           make_real_policy):
    # learners u00-u39 always answer right, u40-u79 always wrong: the first learners by id would read 1.0
    demo = make_curriculum("demo", concepts=5)
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x",
                                                               candidates=[make_real_policy(demo, seed=2)]))
    experiment.started_at = T0 - dt.timedelta(days=1)
    experiment.save(update_fields=["started_at"])
    learners = [f"u{i:02d}" for i in range(80)]
    _serve_and_answer(api_client, learners, steps=2, correct=lambda learner: int(learner[1:]) < 40)

    capped = experiment_outcomes(experiment=experiment, now=T0 + dt.timedelta(days=1), max_learners_per_arm=12)

    assert capped == experiment_outcomes(experiment=experiment, now=T0 + dt.timedelta(days=1), max_learners_per_arm=12)
    for arm in capped.arms:
        assert arm.learners > 12 and arm.metrics["recall_next"].n == 12
        served = set(experiment.arms.get(pk=arm.arm_id).recommendations.values_list("learner", flat=True))
        expected = np.mean([int(l[1:]) < 40 for l in sample(served, 12, seed=experiment.pk)])
        assert arm.metrics["recall_next"].mean == pytest.approx(expected)
        # a sample of 12 from about 40 learners, half of them right: all 12 from one half has probability < 1e-4
        assert 0 < arm.metrics["recall_next"].mean < 1


def test_logged_estimates_above_the_cap_read_whole_learners_of_a_uniform_sample(api_client, make_curriculum,
                                                                                make_real_policy):
    from curriculum.experiments.logged_estimates import logged_estimates

    demo = make_curriculum("demo", concepts=5)
    active = make_real_policy(demo, seed=1)
    promote_policy(policy=active, reason="test")
    target = make_real_policy(demo, seed=2)
    type(demo).objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=0.5)
    learners = [f"u{i:02d}" for i in range(40)]
    _serve_and_answer(api_client, learners, steps=3, correct=lambda learner: int(learner[1:]) < 20)
    demo.refresh_from_db()
    target.refresh_from_db()

    capped = logged_estimates(policy=target, max_decisions=31, seed=5)

    # whole learners (3 decisions each) of the seeded sample's order, at most 31 decisions: its first 10 learners
    assert (capped.decisions, capped.learners) == (30, 10)
    first = sample(learners, 10, seed=5)
    assert capped == logged_estimates(policy=target, max_decisions=31, seed=5)
    assert sorted(first) != learners[:10] and 0 < np.mean([int(l[1:]) < 20 for l in first]) < 1
    # the active version served them all: its observed mean return is the sample's (3 decisions, right or wrong)
    active.refresh_from_db()
    own = logged_estimates(policy=active, max_decisions=31, seed=5).on_policy
    assert own.n == 10 and own.mean == pytest.approx(3 * np.mean([int(l[1:]) < 20 for l in first]))
    assert logged_estimates(policy=target, max_decisions=2, seed=5).decisions == 2  # one learner's newest 2
    # the direct method changes doubly robust only
    plain = logged_estimates(policy=target, max_decisions=31, seed=5, direct_method="memory_model")
    assert plain.estimates["dr"].value != capped.estimates["dr"].value
    assert all(plain.estimates[k] == capped.estimates[k] for k in ("ips", "snips", "pdis"))
    with pytest.raises(ValueError, match="direct_method"):
        logged_estimates(policy=target, direct_method="oracle")
