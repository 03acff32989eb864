"""Behaviour and baseline policies: each picks what its rule says, vectorised over learners."""
import numpy as np
import pytest

from training.rl.encoder import FEATURES_PER_CONCEPT, STATE_FEATURES
from training.rl.policies import (
    DEFAULT_POLICY_MIX, Observation, lowest_recall_choice, make_policy, normalise_mix,
)

C = 4


def _obs(step: int = 0, *, recall=None, t=None, true_gain=None, m: int = 3, reviewed=None) -> Observation:
    """reviewed (bool [m, C]) defaults to recall > 0: a concept never reviewed estimates 0."""
    recall = np.zeros((m, C)) if recall is None else np.asarray(recall, dtype=np.float64)
    reviewed = recall > 0 if reviewed is None else np.asarray(reviewed, dtype=bool)
    states = np.zeros((m, FEATURES_PER_CONCEPT * C), dtype=np.float32)
    states[:, STATE_FEATURES.index("reviews")::FEATURES_PER_CONCEPT] = np.where(reviewed, 0.3, 0.0)
    return Observation(
        step=step,
        t=np.zeros(m) if t is None else np.asarray(t, dtype=np.float64),
        recall=recall,
        states=states,
        cumulative_reward=np.zeros(m),
        true_gain=true_gain,
    )


def _policy(name: str, m: int = 3, seed: int = 0):
    return make_policy(name, num_learners=m, num_concepts=C, rng=np.random.default_rng(seed))


def test_round_robin_cycles_through_concepts_in_position_order():
    policy = _policy("round_robin")
    chosen = [policy.select(_obs(step))[0] for step in range(6)]
    assert chosen == [0, 1, 2, 3, 0, 1]


def test_blocked_repeats_a_concept_block_size_times_then_moves_on():
    policy = _policy("blocked")
    chosen = [int(policy.select(_obs(step))[0]) for step in range(12)]
    assert chosen == [0] * 5 + [1] * 5 + [2] * 2


def test_random_is_deterministic_for_a_seed_and_covers_concepts():
    a = [_policy("random", m=50, seed=7).select(_obs(m=50)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    assert set(a[0].tolist()) == set(range(C))


def test_lowest_recall_picks_the_lowest_estimate_and_never_reviewed_first_in_order():
    recall = [[0.9, 0.2, 0.5, 0.3], [0.5, 0.0, 0.0, 0.1], [0.1, 0.1, 0.9, 0.9]]
    assert _policy("lowest_recall").select(_obs(recall=recall)).tolist() == [1, 1, 0]


def test_lowest_recall_puts_a_never_reviewed_concept_before_a_forgotten_one_and_breaks_ties_by_position():
    recall = [[0.0, 0.4, 0.0, 0.4], [0.6, 0.2, 0.2, 0.9], [0.0, 0.0, 0.3, 0.1]]
    reviewed = [[True, True, False, True], [True, True, True, True], [True, True, True, True]]
    # row 0: position 0 is forgotten (0.0) but reviewed, position 2 never was; rows 1-2: ties go to position order
    chosen = _policy("lowest_recall").select(_obs(recall=recall, reviewed=reviewed))
    assert chosen.tolist() == [2, 1, 0]
    assert lowest_recall_choice(np.asarray(recall), np.asarray(reviewed)).tolist() == [2, 1, 0]


def test_lowest_recall_choice_keeps_to_the_allowed_concepts():
    recall, reviewed = np.array([[0.1, 0.0, 0.5, 0.4]]), np.array([[True, False, True, True]])
    assert lowest_recall_choice(recall, reviewed, allowed=np.array([True, False, True, True])).tolist() == [0]
    assert lowest_recall_choice(recall, reviewed, allowed=np.array([False, False, True, True])).tolist() == [3]
    with pytest.raises(ValueError, match="allowed"):
        lowest_recall_choice(recall, reviewed, allowed=np.zeros(C, dtype=bool))


def test_noisy_lowest_recall_mostly_follows_lowest_recall():
    m = 2000
    recall = np.tile([0.9, 0.8, 0.1, 0.7], (m, 1))
    chosen = _policy("noisy_lowest_recall", m=m).select(_obs(recall=recall, m=m))
    share = (chosen == 2).mean()
    assert 0.75 < share < 0.9  # 1 - epsilon + epsilon / C = 0.85


def test_leitner_introduces_new_concepts_then_reviews_the_lowest_due_box():
    policy = _policy("leitner", m=1)
    t = 1_700_000_000.0
    for k in range(C):  # nothing due: introduce concepts in order
        concept = policy.select(_obs(t=[t], m=1))
        assert concept.tolist() == [k]
        policy.observe(concepts=concept, t=np.array([t]), correct=np.array([k != 2]), rewards=np.zeros(1))
        t += 30
    # concept 2 failed (box 0, due 10 minutes later); the others are in box 1 (due an hour later)
    assert policy.select(_obs(t=[t], m=1)).tolist() == [2]  # none due and none new: the one due soonest
    assert policy.select(_obs(t=[t + 700], m=1)).tolist() == [2]
    assert policy.select(_obs(t=[t + 7200], m=1)).tolist() == [2]  # lowest box first among the due
    policy.observe(concepts=np.array([2]), t=np.array([t + 7200]), correct=np.array([True]), rewards=np.zeros(1))
    assert policy.select(_obs(t=[t + 7200], m=1)).tolist() == [0]  # then the earliest due of box 1
    assert policy.box[0].tolist() == [1, 1, 1, 1]


def test_oracle_maximises_the_true_expected_gain_and_needs_the_simulator():
    gain = np.array([[0.1, 0.3, 0.2, 0.0]] * 3)
    assert _policy("oracle").select(_obs(true_gain=gain)).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="true_gain"):
        _policy("oracle").select(_obs())


def test_default_mix_holds_good_and_bad_behaviour_and_normalises():
    mix = normalise_mix(None)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["noisy_varied_target_recall"] + mix["varied_target_recall"] >= 0.4  # the good behaviour to learn from
    assert mix["random"] > 0 and mix["leitner"] > 0
    assert set(mix) == set(DEFAULT_POLICY_MIX)
    # schedules whose first steps coincide with the good ones' would be ambiguous to a sequence model
    assert "round_robin" not in mix and "blocked" not in mix


def _states_with_reviews(reviews) -> np.ndarray:
    reviews = np.asarray(reviews, dtype=np.float32)
    states = np.zeros((len(reviews), 4 * C), dtype=np.float32)
    states[:, 2::4] = reviews  # the "reviews" feature
    return states


def test_target_recall_introduces_new_concepts_first_then_the_one_closest_to_the_target():
    recall = np.array([[0.9, 0.05, 0.3, 0.6], [0.9, 0.05, 0.3, 0.0], [0.5, 0.1, 0.8, 0.95]])
    reviews = [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]
    obs = Observation(step=5, t=np.zeros(3), recall=recall, states=_states_with_reviews(reviews),
                      cumulative_reward=np.zeros(3))
    # |R - 0.25|: 0.3 beats the nearly forgotten 0.05; a never-reviewed concept comes first; 0.1 beats 0.5
    assert _policy("target_recall").select(obs).tolist() == [2, 3, 1]


def test_noisy_target_recall_mostly_follows_target_recall():
    m = 2000
    recall = np.tile([0.9, 0.8, 0.3, 0.05], (m, 1))
    obs = Observation(step=5, t=np.zeros(m), recall=recall, states=_states_with_reviews(np.ones((m, C))),
                      cumulative_reward=np.zeros(m))
    share = (_policy("noisy_target_recall", m=m).select(obs) == 2).mean()
    assert 0.75 < share < 0.9  # 1 - epsilon + epsilon / C = 0.85


def test_varied_target_recall_gives_each_learner_its_own_target_and_follows_it():
    m = 400
    policy = _policy("varied_target_recall", m=m, seed=5)
    lo, hi = policy.target_range
    assert policy.targets.shape == (m,) and lo <= policy.targets.min() and policy.targets.max() <= hi
    assert policy.targets.std() > 0.05  # spread over the range, not one target
    assert np.array_equal(policy.targets, _policy("varied_target_recall", m=m, seed=5).targets)  # the rng decides
    recall = np.tile([0.9, 0.4, 0.3, 0.15], (m, 1))
    obs = Observation(step=5, t=np.zeros(m), recall=recall, states=_states_with_reviews(np.ones((m, C))),
                      cumulative_reward=np.zeros(m))
    chosen = policy.select(obs)
    # each learner takes the concept closest to its own target
    assert np.array_equal(chosen, np.argmin(np.abs(recall - policy.targets[:, None]), axis=1))
    assert {1, 2, 3} <= set(chosen.tolist())
    reviews = np.ones((m, C))
    reviews[:, 0] = 0  # a never-reviewed concept still comes first, whatever the target
    obs = Observation(step=5, t=np.zeros(m), recall=recall, states=_states_with_reviews(reviews),
                      cumulative_reward=np.zeros(m))
    assert (policy.select(obs) == 0).all()


def test_noisy_varied_target_recall_mostly_follows_its_targets():
    m = 2000
    policy = _policy("noisy_varied_target_recall", m=m)
    recall = np.tile([0.9, 0.4, 0.3, 0.15], (m, 1))
    obs = Observation(step=5, t=np.zeros(m), recall=recall, states=_states_with_reviews(np.ones((m, C))),
                      cumulative_reward=np.zeros(m))
    share = (policy.select(obs) == np.argmin(np.abs(recall - policy.targets[:, None]), axis=1)).mean()
    assert 0.75 < share < 0.9  # 1 - epsilon + epsilon / C = 0.85


def test_unknown_policy_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="lowest_recall"):
        _policy("smartest")


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -float("inf"), True, "1", None])
def test_a_mix_weight_that_is_not_a_finite_number_is_refused_by_name(weight):
    with pytest.raises(ValueError, match=r"policy_mix: the weights of \['leitner'\] are not finite numbers"):
        normalise_mix({"random": 1, "leitner": weight})


def test_mix_weights_are_relative():
    assert normalise_mix({"random": 3, "leitner": 5, "blocked": 0}) == {"random": 0.375, "leitner": 0.625}


def _fsrs6_hand(w):
    """FSRS-6's formulas (fsrs package 6.3, scheduler.py) written out for the planner's hand-computed gains."""
    w20 = w[20]
    factor = 0.9 ** (-1 / w20) - 1

    def curve(days, s):
        return (1 + factor * days / s) ** -w20

    def d0(grade):
        return min(max(w[4] - np.exp(w[5] * (grade - 1)) + 1, 1.0), 10.0)  # D in [1, 10]

    def success(s, d, r):  # Good, a day or more after the last review
        return s * (1 + np.exp(w[8]) * (11 - d) * s ** -w[9] * (np.exp(w[10] * (1 - r)) - 1))

    def lapse(s, d, r):
        return min(w[11] * d ** -w[12] * ((s + 1) ** w[13] - 1) * np.exp(w[14] * (1 - r)), s / np.exp(w[17] * w[18]))

    return curve, d0, success, lapse


def test_planner_picks_the_highest_hand_computed_expected_gain_at_the_horizon():
    """Two learners of 3 concepts at day 100, horizon 1 day, the unfitted FSRS-6 encoder. Learner 0: c0 Good 3 days
    ago, c1 Again 2 days ago, c2 never reviewed; learner 1: the same, and c2 Easy 1 day ago. gain = p R_h(Good) +
    (1 - p) R_h(Again) - R_h(no review), p the recall now; a concept never reviewed: its first review as Again."""
    from training.rl.encoder import EncoderConfig, StateEncoder, fsrs6

    w = fsrs6.DEFAULT_PARAMETERS
    curve, d0, success, lapse = _fsrs6_hand(w)
    day, now = 86400.0, 100 * 86400.0
    encoder = StateEncoder(EncoderConfig(num_concepts=3))
    memory = encoder.init_memory(2)
    for concept, days_ago, correct, grade, rows in ((0, 3, True, 3, [0, 1]), (1, 2, False, 1, [0, 1]),
                                                   (2, 1, True, 4, [1])):
        n = len(rows)
        encoder.update(memory, np.array(rows), np.full(n, concept), np.full(n, now - days_ago * day),
                       np.full(n, correct), np.full(n, grade))

    def reviewed_gain(s, d, days_ago):
        p = curve(days_ago, s)
        return p * curve(1, success(s, d, p)) + (1 - p) * curve(1, lapse(s, d, p)) - curve(days_ago + 1, s)

    g0, g1 = reviewed_gain(w[2], d0(3), 3), reviewed_gain(w[0], d0(1), 2)
    expected = np.array([[g0, g1, curve(1, w[0])], [g0, g1, reviewed_gain(w[3], d0(4), 1)]])
    gain = encoder.expected_recall_gain(memory, np.full(2, now))
    assert gain == pytest.approx(expected, abs=1e-12)
    assert expected.round(4).tolist() == [[0.1168, 0.2159, 0.7662], [0.1168, 0.2159, 0.0201]]
    obs = Observation(step=5, t=np.full(2, now), recall=encoder.recall(memory, np.full(2, now)),
                      states=encoder.encode(memory, np.full(2, now)), cumulative_reward=np.zeros(2),
                      expected_gain=gain)
    planner = make_policy("planner", num_learners=2, num_concepts=3, rng=np.random.default_rng(0))
    assert planner.select(obs).tolist() == [2, 1]
    assert encoder.expected_recall_gain(memory, np.full(1, now), rows=np.array([1])) == pytest.approx(expected[1:])
    with pytest.raises(ValueError, match="expected_gain"):
        planner.select(Observation(step=5, t=obs.t, recall=obs.recall, states=obs.states,
                                   cumulative_reward=obs.cumulative_reward))


def test_planner_drives_the_simulator_and_may_join_a_behaviour_mix():
    from training.rl.simulator import generate_logs

    assert normalise_mix({"planner": 1.0, "random": 1.0}) == {"planner": 0.5, "random": 0.5}
    log = generate_logs(num_users=6, interactions=12, num_concepts=C, seed=2, policy_mix={"planner": 1.0})
    assert set(log.behaviour_policy) == {"planner"}
    first = log.concept.reshape(6, 12)[:, :C]
    # a concept never reviewed gains the most at first (0.766 against at most a few hundredths for one just seen)
    assert all(sorted(row) == list(range(C)) for row in first.tolist())
