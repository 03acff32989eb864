"""Off-policy estimators (curriculum/experiments/off_policy.py): hand-computed values on tiny logs, obp 0.4.1's values
on a one-step log, scope-rl 0.2.1's on a sequential one, on-policy logs, doubly robust with the exact Q-function, the
bootstrap over learners, bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curriculum.experiments.off_policy import (ESTIMATORS, doubly_robust, effective_sample_size, episodes_from_rows,
                                               estimate_all, ips, mean_reward_after, pdis, snips)

REPO = Path(__file__).resolve().parents[3]

# A tiny log of 3 learners, up to 3 decisions each (learner B made 2: its third entry is padding, the mask says so).
#   A: pi_b 0.5, 0.25, 0.5; pi_e 1.0, 0.5, 0.25 -> ratios 2, 2, 0.5, cumulative w 2, 4, 2; rewards 1, 2, 3 (G 6)
#   B: pi_b 0.8, 0.5;       pi_e 0.4, 1.0       -> ratios 0.5, 2,   cumulative w 0.5, 1;  rewards 0.5, -1 (G -0.5)
#   C: pi_b = pi_e = 0.5 at each step            -> w 1, 1, 1;                              rewards 0, 0, 1 (G 1)
TINY = {
    "propensity": [[0.5, 0.25, 0.5], [0.8, 0.5, 0.3], [0.5, 0.5, 0.5]],
    "target_probability": [[1.0, 0.5, 0.25], [0.4, 1.0, 0.9], [0.5, 0.5, 0.5]],
    "reward": [[1.0, 2.0, 3.0], [0.5, -1.0, 7.0], [0.0, 0.0, 1.0]],
    "mask": np.array([[True, True, True], [True, True, False], [True, True, True]]),
}
TINY_Q = [[0.5, 1.0, 2.0], [0.0, 0.0, 5.0], [0.0, 0.0, 0.0]]
TINY_V = [[1.0, 1.5, 2.5], [1.0, -1.0, 5.0], [0.0, 0.0, 0.0]]


def test_ips_equals_the_hand_computed_value_on_a_tiny_log():
    # episode weights 2, 1, 1 times returns 6, -0.5, 1: (12 - 0.5 + 1) / 3
    estimate = ips(**TINY)
    assert estimate.value == pytest.approx(12.5 / 3)
    assert estimate.ess == pytest.approx(16 / 6)  # (2 + 1 + 1)^2 / (4 + 1 + 1)
    assert (estimate.learners, estimate.decisions) == (3, 8)
    assert estimate.to_dict() == {"estimator": "ips", "value": estimate.value, "ci95": list(estimate.ci95),
                                  "ess": estimate.ess, "learners": 3, "decisions": 8, "confidence": 0.95}


def test_snips_equals_the_hand_computed_value_on_a_tiny_log():
    # (2 * 6 + 1 * -0.5 + 1 * 1) / (2 + 1 + 1)
    assert snips(**TINY).value == pytest.approx(12.5 / 4)


def test_pdis_equals_the_hand_computed_value_on_a_tiny_log():
    # A: 2*1 + 4*2 + 2*3 = 16; B: 0.5*0.5 + 1*(-1) = -0.75; C: 1
    estimate = pdis(**TINY)
    assert estimate.value == pytest.approx((16 - 0.75 + 1) / 3)
    # Kish ESS of the cumulative weights per step, averaged: step 0 (2, 0.5, 1) 12.25/5.25; step 1 (4, 1, 1) 36/18;
    # step 2, learners A and C only (2, 1): 9/5
    assert estimate.ess == pytest.approx((12.25 / 5.25 + 2 + 1.8) / 3)


def test_doubly_robust_equals_the_hand_computed_value_on_a_tiny_log():
    # sum_t w_{t-1} v_t + w_t (r_t - q_t)
    # A: (1*1 + 2*(1 - 0.5)) + (2*1.5 + 4*(2 - 1)) + (4*2.5 + 2*(3 - 2)) = 2 + 7 + 12 = 21
    # B: (1*1 + 0.5*(0.5 - 0)) + (0.5*(-1) + 1*(-1 - 0)) = 1.25 - 1.5 = -0.25
    # C: q = v = 0, w = 1: its return, 1
    estimate = doubly_robust(**TINY, q_hat=TINY_Q, v_hat=TINY_V)
    assert estimate.value == pytest.approx((21 - 0.25 + 1) / 3)
    assert estimate.ess == pytest.approx(pdis(**TINY).ess)


def test_doubly_robust_equals_jiang_and_lis_backward_recursion():
    rng = np.random.default_rng(4)
    n, steps = 7, 5
    pb, pe = rng.uniform(0.1, 1.0, (n, steps)), rng.uniform(0.0, 1.0, (n, steps))
    r, q, v = rng.normal(size=(n, steps)), rng.normal(size=(n, steps)), rng.normal(size=(n, steps))
    lengths = np.array([5, 1, 3, 5, 2, 4, 5])
    mask = np.arange(steps)[None, :] < lengths[:, None]
    values = []
    for i in range(n):  # V^(t) = v_t + rho_t (r_t + V^(t+1) - q_t), V^(T_i) = 0 (Jiang & Li 2016, eq. 9)
        later = 0.0
        for t in reversed(range(lengths[i])):
            later = v[i, t] + pe[i, t] / pb[i, t] * (r[i, t] + later - q[i, t])
        values.append(later)
    estimate = doubly_robust(propensity=pb, target_probability=pe, reward=r, q_hat=q, v_hat=v, mask=mask)
    assert estimate.value == pytest.approx(np.mean(values))


# A one-step log (6 learners, 3 concepts) scored by obp 0.4.1: in a throwaway venv (python3 -m venv /tmp/obpvenv;
# pip install obp==0.4.1), with action = [0, 2, 1, 1, 0, 2], position 0, action_dist = PI_E[:, :, None] and
# estimated_rewards_by_reg_model = Q[:, :, None], obp.ope's InverseProbabilityWeighting, SelfNormalizedInverse-
# ProbabilityWeighting and DoublyRobust (default lambda, no clipping) gave, by estimate_policy_value,
# 0.6741666666666667, 0.29633699633699634 and 0.2541666666666667.
OBP_ACTION = np.array([0, 2, 1, 1, 0, 2])
OBP_REWARD = np.array([0.30, 0.10, 0.55, 0.20, 0.05, 0.40])
OBP_PSCORE = np.array([0.50, 0.20, 0.25, 0.40, 0.60, 0.10])
OBP_PI_E = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3],
                     [0.3, 0.3, 0.4], [0.9, 0.05, 0.05], [0.25, 0.25, 0.5]])
OBP_Q = np.array([[0.25, 0.40, 0.15], [0.05, 0.30, 0.20], [0.10, 0.45, 0.35],
                  [0.30, 0.25, 0.10], [0.10, 0.20, 0.30], [0.20, 0.15, 0.35]])


def test_one_step_estimates_equal_obp_041_on_the_same_log():
    rows = np.arange(len(OBP_ACTION))
    estimates = estimate_all(propensity=OBP_PSCORE, target_probability=OBP_PI_E[rows, OBP_ACTION],
                             reward=OBP_REWARD, q_hat=OBP_Q[rows, OBP_ACTION], v_hat=(OBP_PI_E * OBP_Q).sum(axis=1))
    assert estimates["ips"].value == pytest.approx(0.6741666666666667, abs=1e-12)
    assert estimates["snips"].value == pytest.approx(0.29633699633699634, abs=1e-12)
    assert estimates["dr"].value == pytest.approx(0.2541666666666667, abs=1e-12)
    assert estimates["pdis"].value == estimates["ips"].value  # one decision: per-decision IS is IPS


# A sequential log (4 learners x 3 decisions, 3 concepts) scored by scope-rl 0.2.1 (pip install scope-rl==0.2.1 in a
# throwaway venv; it also pulls torch 2.14 with CUDA, d3rlpy, gym and obp 0.4.1): scope_rl.ope.discrete's
# TrajectoryWiseImportanceSampling, SelfNormalizedTIS, PerDecisionImportanceSampling and DoublyRobust with
# step_per_trajectory=3, gamma=1.0, action = [0, 2, 1, 1, 1, 0, 2, 0, 0, 1, 2, 2], evaluation_policy_action_dist the
# rows of pi_e(. | s_t) whose logged entries are SCOPE_PI_E and state_action_value_prediction the rows of q(s_t, .)
# whose logged entries and pi_e-averages are SCOPE_Q and SCOPE_V, gave 2.109722222222222, 0.5655249441397179,
# 2.064722222222222 and 1.0410277777777777. (SelfNormalizedTIS divides by the mean weight + 1e-10: 1.5e-11 apart.)
SCOPE_REWARD = [[0.2, -0.1, 0.4], [0.0, 0.3, 0.1], [0.5, 0.2, -0.2], [0.1, 0.1, 0.6]]
SCOPE_PSCORE = [[0.5, 0.2, 0.4], [0.3, 0.6, 0.25], [0.2, 0.5, 0.5], [0.4, 0.3, 0.35]]
SCOPE_PI_E = [[0.6, 0.6, 0.7], [0.5, 0.5, 0.4], [0.8, 0.5, 0.3], [0.6, 0.7, 0.4]]
SCOPE_Q = [[0.3, 0.0, 0.3], [0.1, 0.3, 0.1], [0.4, 0.3, 0.0], [0.2, 0.3, 0.5]]
SCOPE_V = [[0.21, 0.06, 0.26], [0.19, 0.175, 0.08], [0.37, 0.23, -0.01], [0.24, 0.25, 0.41]]


def test_sequential_estimates_equal_scope_rl_021_on_the_same_log():
    estimates = estimate_all(propensity=SCOPE_PSCORE, target_probability=SCOPE_PI_E, reward=SCOPE_REWARD,
                             q_hat=SCOPE_Q, v_hat=SCOPE_V)
    assert estimates["ips"].value == pytest.approx(2.109722222222222, abs=1e-12)
    assert estimates["snips"].value == pytest.approx(0.5655249441397179, abs=1e-10)
    assert estimates["pdis"].value == pytest.approx(2.064722222222222, abs=1e-12)
    assert estimates["dr"].value == pytest.approx(1.0410277777777777, abs=1e-12)


def test_on_policy_logs_give_the_plain_mean_return():
    rng = np.random.default_rng(11)
    p = rng.uniform(0.05, 1.0, (40, 6))
    r = rng.normal(size=(40, 6))
    mean_return = r.sum(axis=1).mean()
    for name, estimate in estimate_all(propensity=p, target_probability=p, reward=r).items():
        assert estimate.value == pytest.approx(mean_return), name
        assert estimate.ess == pytest.approx(40), name
    # DR's control variate sum_t (v_t - q_t) vanishes when the model gives every action the same value
    q = rng.normal(size=(40, 6))
    assert doubly_robust(propensity=p, target_probability=p, reward=r, q_hat=q, v_hat=q).value == \
        pytest.approx(mean_return)


def _deterministic_chain_log(n: int, seed: int) -> dict:
    """n learners in a deterministic MDP of 3 steps and 2 actions: state (step, times action 1 was taken), reward
    r(s, a) fixed; behaviour uniform, target stochastic by state. Returns the logged arrays, the exact Q^{pi_e} of
    the logged actions, V^{pi_e} of the logged states and the target's true value V^{pi_e}(s_0)."""
    steps = 3

    def reward(t, k, a):
        return 1.0 if a == 1 and k == 0 else 0.3 * a + 0.1 * t

    def target(t, k):  # pi_e(. | s)
        p1 = 0.8 if k == 0 else 0.3
        return np.array([1 - p1, p1])

    value = {}  # V^{pi_e}(t, k), backward
    q = {}
    for t in reversed(range(steps)):
        for k in range(t + 1):
            for a in (0, 1):
                q[t, k, a] = reward(t, k, a) + (value[t + 1, k + a] if t + 1 < steps else 0.0)
            value[t, k] = float(target(t, k) @ [q[t, k, 0], q[t, k, 1]])
    rng = np.random.default_rng(seed)
    out = {name: np.zeros((n, steps)) for name in ("propensity", "target_probability", "reward", "q_hat", "v_hat")}
    for i in range(n):
        k = 0
        for t in range(steps):
            a = int(rng.integers(2))
            out["propensity"][i, t] = 0.5
            out["target_probability"][i, t] = target(t, k)[a]
            out["reward"][i, t] = reward(t, k, a)
            out["q_hat"][i, t] = q[t, k, a]
            out["v_hat"][i, t] = value[t, k]
            k += a
    return {**out, "truth": value[0, 0]}


def test_doubly_robust_with_the_exact_q_function_has_zero_variance_on_a_deterministic_log():
    log = _deterministic_chain_log(n=60, seed=3)
    truth = log.pop("truth")
    estimate = doubly_robust(**log)
    assert estimate.value == pytest.approx(truth)
    assert estimate.ci95 == pytest.approx((truth, truth))  # every learner's DR term is V(s_0)
    log.pop("q_hat"), log.pop("v_hat")
    importance = pdis(**log)  # the same log without the model: unbiased, but it varies from learner to learner
    assert importance.ci95[1] - importance.ci95[0] > 0.1


def test_the_bootstrap_resamples_learners_not_decisions():
    # each learner repeats one reward over 5 decisions: the return's spread is 5x a reward's, and the interval must
    # be the learners' (1.96 sd(G) / sqrt(n)), not sqrt(5) narrower as resampling decisions would make it
    rng = np.random.default_rng(0)
    n = 2000
    r = np.repeat(rng.normal(size=(n, 1)), 5, axis=1)
    p = np.full((n, 5), 0.5)
    estimate = ips(propensity=p, target_probability=p, reward=r, seed=1)
    half_width = (estimate.ci95[1] - estimate.ci95[0]) / 2
    assert half_width == pytest.approx(1.96 * r.sum(axis=1).std() / np.sqrt(n), rel=0.1)


def test_the_bootstrap_is_seeded():
    rng = np.random.default_rng(8)
    log = {"propensity": rng.uniform(0.2, 1.0, (30, 4)), "target_probability": rng.uniform(0.0, 1.0, (30, 4)),
           "reward": rng.normal(size=(30, 4))}
    first, again, other = (snips(**log, seed=s) for s in (5, 5, 6))
    assert first.ci95 == again.ci95
    assert first.ci95 != other.ci95
    assert first.contains(first.value)


def test_a_wider_confidence_gives_a_wider_interval():
    rng = np.random.default_rng(2)
    p, r = rng.uniform(0.2, 1.0, (50, 3)), rng.normal(size=(50, 3))
    narrow = ips(propensity=p, target_probability=p[::-1], reward=r, confidence=0.5)
    wide = ips(propensity=p, target_probability=p[::-1], reward=r, confidence=0.99)
    assert wide.ci95[0] < narrow.ci95[0] < narrow.ci95[1] < wide.ci95[1]


def test_effective_sample_size_is_kish():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size([5.0, 0.0, 0.0]) == pytest.approx(1)
    assert effective_sample_size([1.0, 3.0]) == pytest.approx(16 / 10)
    assert effective_sample_size([0.0, 0.0]) == 0.0


def test_episodes_from_rows_pads_each_learners_decisions_in_time_order():
    learner = ["b", "a", "b", "a", "b"]
    reward = [1.0, 2.0, 3.0, 4.0, 5.0]
    mask, (padded,) = episodes_from_rows(learner, reward)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    assert padded.tolist() == [[2.0, 4.0, 0.0], [1.0, 3.0, 5.0]]
    # the packed log is the padded one: the estimators read the same episodes
    rows = {"learner": [0, 1, 0, 2, 1, 0, 2, 2],
            "propensity": [0.5, 0.8, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5],
            "target_probability": [1.0, 0.4, 0.5, 0.5, 1.0, 0.25, 0.5, 0.5],
            "reward": [1.0, 0.5, 2.0, 0.0, -1.0, 3.0, 0.0, 1.0]}
    mask, (pb, pe, r) = episodes_from_rows(rows["learner"], rows["propensity"], rows["target_probability"],
                                           rows["reward"])
    assert (mask == TINY["mask"]).all()
    assert pdis(propensity=pb, target_probability=pe, reward=r, mask=mask).value == pytest.approx(pdis(**TINY).value)
    with pytest.raises(ValueError, match=r"columns\[0\]"):
        episodes_from_rows(learner, reward[:-1])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("propensity", [[0.0, 0.5]], "propensity: expected a probability in \\(0, 1\\]"),
    ("propensity", [[0.5, 1.5]], "propensity: expected a probability in \\(0, 1\\]"),
    ("propensity", [[-0.1, 0.5]], "propensity"),
    ("target_probability", [[0.5, 1.2]], "target_probability: expected a probability in \\[0, 1\\]"),
    ("target_probability", [[-0.5, 0.2]], "target_probability"),
    ("reward", [[np.nan, 1.0]], "reward: NaN or infinity"),
    ("reward", [[1.0, np.inf]], "reward: NaN or infinity"),
    ("propensity", [[np.nan, 0.5]], "propensity: NaN or infinity"),
    ("reward", [[1.0, 2.0, 3.0]], "reward: shape"),
    ("reward", [[[1.0, 2.0]]], "reward: expected shape"),
    ("reward", [["x", 1.0]], "reward: expected an array of numbers"),
    ("mask", np.array([[True, False]]).astype(int), "mask: expected booleans"),
    ("mask", np.array([[False, True]]), "mask: learners \\[0\\] have no decision"),
    ("mask", np.array([[True, True, False]]), "mask: shape"),
])
def test_bad_input_raises_naming_the_field(field, value, message):
    log = {"propensity": [[0.5, 0.5]], "target_probability": [[0.5, 0.25]], "reward": [[1.0, 0.0]]}
    log[field] = value
    for estimator in (ips, snips, pdis):
        with pytest.raises(ValueError, match=message):
            estimator(**log)


def test_a_mask_that_is_not_a_prefix_raises():
    log = {"propensity": [[0.5, 0.5, 0.5]], "target_probability": [[0.5, 0.25, 1.0]], "reward": [[1.0, 0.0, 2.0]]}
    with pytest.raises(ValueError, match="mask: each learner's decisions must be a prefix"):
        pdis(**log, mask=np.array([[True, False, True]]))


def test_padding_past_a_learners_last_decision_is_ignored_even_when_invalid():
    padded = {key: np.array(value, dtype=float) for key, value in TINY.items() if key != "mask"}
    padded["propensity"][1, 2], padded["reward"][1, 2] = 0.0, np.nan  # outside the mask
    assert pdis(**padded, mask=TINY["mask"]).value == pytest.approx(pdis(**TINY).value)


def test_doubly_robust_checks_the_model_estimates():
    with pytest.raises(ValueError, match="q_hat: NaN"):
        doubly_robust(**TINY, q_hat=[[np.nan, 0, 0], [0, 0, 0], [0, 0, 0]], v_hat=TINY_V)
    with pytest.raises(ValueError, match="v_hat: shape"):
        doubly_robust(**TINY, q_hat=TINY_Q, v_hat=[[0.0]])
    with pytest.raises(ValueError, match="v_hat: doubly robust needs both"):
        estimate_all(**TINY, q_hat=TINY_Q)


def test_snips_refuses_a_log_the_target_never_follows():
    with pytest.raises(ValueError, match="target_probability: every learner's episode weight is 0"):
        snips(propensity=[0.5, 0.5], target_probability=[0.0, 0.0], reward=[1.0, 2.0])
    # IPS is defined there (0): it is the unbiased estimate of a target that never takes the logged actions
    assert ips(propensity=[0.5, 0.5], target_probability=[0.0, 0.0], reward=[1.0, 2.0]).value == 0.0


def test_overflowing_importance_weights_are_refused_saying_so_not_an_index_error():
    # 40 decisions at propensity 1e-10 that the target always takes: a ratio of 1e10 each, a product of 1e400
    n, T = 5, 40
    every = {"propensity": np.full((n, T), 1e-10), "target_probability": np.ones((n, T)), "reward": np.ones((n, T))}
    one = {**every, "propensity": np.where(np.arange(n)[:, None] == 0, 1e-10, np.full((n, T), 0.5))}  # learner 0's
    q = {"q_hat": np.zeros((n, T)), "v_hat": np.zeros((n, T))}
    for log in (every, one):
        for name, estimator in ESTIMATORS.items():
            with np.errstate(all="raise"), pytest.raises(ValueError, match="importance weights overflowed"):
                estimator(**log, **(q if name == "dr" else {}), bootstrap_samples=100)


def test_weights_near_the_float_range_keep_their_effective_sample_size():
    assert effective_sample_size([1e200, 1e200]) == pytest.approx(2)


def test_one_learner_has_an_estimate_but_no_interval():
    log = {"propensity": [[0.5, 0.5]], "target_probability": [[0.5, 0.5]], "reward": [[1.5, 3.0]]}
    for name, estimator in ESTIMATORS.items():
        estimate = estimator(**log, **({"q_hat": [[0.0, 0.0]], "v_hat": [[0.0, 0.0]]} if name == "dr" else {}))
        assert estimate.value == pytest.approx(4.5) and estimate.ci95 is None and estimate.learners == 1
        assert estimate.to_dict()["ci95"] is None and not estimate.contains(4.5)


@pytest.mark.parametrize(("setting", "value"), [("bootstrap_samples", 10), ("bootstrap_samples", 1.5e3),
                                                ("confidence", 1.0), ("confidence", 0.0), ("confidence", True)])
def test_bootstrap_settings_out_of_range_raise(setting, value):
    with pytest.raises(ValueError, match=setting):
        ips(**TINY, **{setting: value})


def test_an_empty_log_raises():
    with pytest.raises(ValueError, match="propensity: no learner"):
        ips(propensity=np.zeros((0, 2)), target_probability=np.zeros((0, 2)), reward=np.zeros((0, 2)))


def test_the_module_imports_without_django():
    code = ("import sys; import curriculum.experiments.off_policy; "
            "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'torch')) or 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_mean_reward_after_each_step_by_hand_on_the_tiny_log():
    # reward-to-go after step 0: A 2 + 3 = 5, B -1, C 0 + 1 = 1 -> 5/3; after step 1: A 3, B none (its step 2 is
    # padding: 0), C 1 -> (3 + 0 + 1) / 3; after the last step: 0
    after = mean_reward_after(TINY["reward"], TINY["mask"])
    assert after == pytest.approx([5 / 3, 4 / 3, 0.0])
    assert mean_reward_after([[1.0, 2.0]], None) == pytest.approx([2.0, 0.0])


def test_doubly_robust_with_the_future_term_stays_unbiased_and_equals_the_mean_return_on_policy():
    # on-policy every w is 1: the added sum_t c_t (w_{t-1} - w_t) vanishes
    rng = np.random.default_rng(5)
    p, r, q = rng.uniform(0.05, 1, (30, 4)), rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    after = mean_reward_after(r)[None, :]
    assert doubly_robust(propensity=p, target_probability=p, reward=r, q_hat=q + after, v_hat=q + after).value == \
        pytest.approx(r.sum(axis=1).mean())
    # off-policy, on the deterministic chain: the future term keeps DR's mean over many logs at the truth
    values = []
    for seed in range(200):
        log = _deterministic_chain_log(n=40, seed=seed)
        after = mean_reward_after(log["reward"])[None, :]
        values.append(doubly_robust(propensity=log["propensity"], target_probability=log["target_probability"],
                                    reward=log["reward"], q_hat=np.zeros_like(log["reward"]) + after,
                                    v_hat=np.zeros_like(log["reward"]) + after, bootstrap_samples=100).value)
    truth = _deterministic_chain_log(n=1, seed=0)["truth"]
    assert abs(np.mean(values) - truth) < 4 * np.std(values) / np.sqrt(len(values))
