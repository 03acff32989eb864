"""Synthetic students: determinism, realistic time, memory dynamics, the recorded behaviour mix."""
import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, StateEncoder
from training.rl.policies import make_policy
from training.rl.simulator import Cohort, generate_logs, run_policies

DAY = 86400.0


def _cohort(**kwargs) -> Cohort:
    args = {"num_students": 50, "num_concepts": 5, "interactions": 10, "seed": 3} | kwargs
    return Cohort(**args)


def test_generate_logs_is_deterministic_for_a_seed():
    a = generate_logs(num_users=20, interactions=30, num_concepts=6, seed=11)
    b = generate_logs(num_users=20, interactions=30, num_concepts=6, seed=11)
    c = generate_logs(num_users=20, interactions=30, num_concepts=6, seed=12)
    for name in ("learner", "concept", "t", "correct", "grade", "response_time_ms", "behaviour_policy"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.t, c.t)


def test_generate_logs_columns_are_sorted_by_learner_then_time_and_consistent():
    log = generate_logs(num_users=30, interactions=40, num_concepts=8, seed=5)
    assert len(log) == 30 * 40
    assert log.learner.dtype == np.int64 and log.concept.dtype == np.int64 and log.t.dtype == np.float64
    assert log.correct.dtype == bool and log.grade.dtype == np.int8 and log.response_time_ms.dtype == np.int32
    same = log.learner[1:] == log.learner[:-1]
    assert (np.diff(log.learner) >= 0).all()
    assert (np.diff(log.t)[same] > 0).all()
    assert log.concept.min() >= 0 and log.concept.max() < 8
    assert ((log.grade == 1) == ~log.correct).all()
    assert set(np.unique(log.grade[log.correct])) <= {2, 3, 4}
    assert (log.response_time_ms > 0).all()
    assert log.behaviour_policy.shape == (30,)


def test_review_times_form_sessions_within_days_and_breaks_of_days():
    gaps = np.diff(_cohort(num_students=100, interactions=100).schedule(), axis=1).ravel()
    within_session = gaps < 120
    assert gaps.min() >= 5 and 0.7 < within_session.mean() < 0.95
    assert ((gaps > 3600) & (gaps < 8 * 3600)).any()  # another session the same day
    assert (gaps > DAY).any() and gaps.max() < 4 * DAY + 1


def test_schedule_and_students_do_not_depend_on_policy_or_cohort_size():
    small, large = _cohort(num_students=10), _cohort(num_students=40)
    assert np.array_equal(small.schedule(), large.schedule()[:10])
    assert np.array_equal(small.learning_rate, large.learning_rate[:10])
    log_a = generate_logs(num_users=10, interactions=10, num_concepts=5, seed=3, policy_mix={"random": 1})
    log_b = generate_logs(num_users=10, interactions=10, num_concepts=5, seed=3, policy_mix={"blocked": 1})
    assert np.array_equal(log_a.t, log_b.t)
    assert not np.array_equal(log_a.concept, log_b.concept)


def test_held_out_students_differ_from_training_students_with_the_same_seed():
    training, held_out = _cohort(), _cohort(held_out=True)
    assert not np.array_equal(training.learning_rate, held_out.learning_rate)
    assert np.array_equal(training.difficulty, held_out.difficulty)  # the same curriculum


def test_unseen_concept_has_no_recall_and_first_review_teaches():
    cohort = _cohort()
    t = cohort.schedule()[:, 0]
    assert (cohort.recall_probability(t) == 0).all()
    outcome = cohort.review(np.zeros(50, dtype=np.int64), t)
    assert not outcome.correct.any() and (outcome.grade == 1).all()
    recall = cohort.recall_probability(t + 60)
    assert (recall[:, 0] > 0.99).all() and (recall[:, 1:] == 0).all()


def test_spaced_reviews_beat_massed_reviews_on_final_recall():
    n, reviews = 300, 5
    start = 1_700_000_000.0
    finals = {}
    for name, gap in (("massed", 30.0), ("spaced", 8 * 3600.0)):
        cohort = _cohort(num_students=n, num_concepts=1, interactions=reviews, seed=8)
        for k in range(reviews):
            cohort.review(np.zeros(n, dtype=np.int64), np.full(n, start + k * gap))
        finals[name] = cohort.recall_probability(start + 4 * DAY)[:, 0].mean()
    assert finals["spaced"] > finals["massed"] + 0.1


def test_correct_review_at_low_recall_lengthens_half_life_more_than_massed_one():
    cohort = _cohort(num_students=1, num_concepts=2, interactions=3)
    t0 = 1_700_000_000.0
    cohort.review(np.array([0]), np.array([t0]))
    first = cohort.half_life[0, 0]
    seen, concept = np.array([True]), np.array([0])
    half_life = np.array([first])
    gain_low, _ = cohort.half_life_after(p=np.array([0.3]), half_life=half_life, seen=seen, concepts=concept)
    gain_massed, lapse = cohort.half_life_after(p=np.array([.99]), half_life=half_life, seen=seen, concepts=concept)
    assert gain_low[0] > 2 * first
    assert first < gain_massed[0] and gain_massed[0] - first < 0.05 * (gain_low[0] - first)
    assert lapse[0] == pytest.approx(first)  # a lapse never goes below the first half-life


def test_policy_mix_is_recorded_per_learner():
    mix = {"blocked": 1, "random": 1}
    log = generate_logs(num_users=40, interactions=12, num_concepts=4, seed=1, policy_mix=mix)
    assert set(log.behaviour_policy) == {"blocked", "random"}
    blocked = np.flatnonzero(log.behaviour_policy == "blocked")[0]
    rows = log.concept[log.learner == blocked]
    assert rows.tolist() == [0] * 5 + [1] * 5 + [2] * 2


def test_policy_mix_refuses_the_oracle_and_unknown_names():
    with pytest.raises(ValueError, match="policy_mix"):
        generate_logs(num_users=2, interactions=2, num_concepts=2, seed=0, policy_mix={"oracle": 1})
    with pytest.raises(ValueError, match="policy_mix"):
        generate_logs(num_users=2, interactions=2, num_concepts=2, seed=0, policy_mix={"nope": 1})


def test_policy_mix_refuses_finite_weights_whose_sum_overflows():
    # the simulator's own check (normalise_mix), so every caller of generate_logs refuses before simulating
    with pytest.raises(ValueError, match="policy_mix: the weights sum to more than the largest number"):
        generate_logs(num_users=2, interactions=2, num_concepts=2, seed=0, policy_mix={"random": 1e308, "leitner": 1e308})


def test_rollout_rewards_are_the_encoder_rewards_of_the_log():
    cohort = _cohort(num_students=8, interactions=15)
    policy = make_policy("random", num_learners=8, num_concepts=5, rng=np.random.default_rng(0))
    encoder = StateEncoder(EncoderConfig(num_concepts=5))
    rollout = run_policies(cohort=cohort, groups=[(policy, np.arange(8))], encoder=encoder)
    memory = encoder.init_memory(8)
    for k in range(15):
        step = (rollout.concepts[:, k], rollout.t[:, k], rollout.correct[:, k], rollout.grade[:, k])
        rewards = encoder.update(memory, np.arange(8), *step)
        assert np.array_equal(rewards, rollout.rewards[:, k])
