"""Per-concept recall exponents (EncoderConfig.concept_recall_exponent): the encoder's recall is FSRS-6's
retrievability to each concept's power, fitted across learners by maximum a posteriori."""
import json

import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, StateEncoder, encoder_identity
from training.rl.encoder.fit import fit_concept_recall_exponents, fit_encoder_config
from training.rl.simulator import generate_logs
from training.rl.students.builtin import Cohort

DAY = 86400.0


def reviewed_memory(config: EncoderConfig):
    """Two learners who reviewed every concept once (Good) at t=0; the encoder and its memory."""
    encoder = StateEncoder(config)
    memory = encoder.init_memory(2)
    for c in range(config.num_concepts):
        encoder.update(memory, np.arange(2), np.full(2, c), np.zeros(2), np.ones(2, bool), np.full(2, 3))
    return encoder, memory


def test_the_recall_of_a_concept_is_fsrs6s_to_its_exponent():
    plain, memory = reviewed_memory(EncoderConfig(num_concepts=3))
    scaled, _ = reviewed_memory(EncoderConfig(num_concepts=3, concept_recall_exponent=(1.0, 2.0, 0.5)))
    t = np.full(2, 5 * DAY)
    base = plain.recall(memory, t)
    assert 0.5 < base[0, 0] < 0.99  # five days after a first Good review: partly forgotten
    np.testing.assert_allclose(scaled.recall(memory, t), base ** np.array([1.0, 2.0, 0.5]), rtol=1e-12)
    # the state's recall feature and the rewards' horizon recall read the same estimate; elapsed, reviews and
    # stability do not change
    a, b = plain.encode(memory, t).reshape(2, 3, 4), scaled.encode(memory, t).reshape(2, 3, 4)
    np.testing.assert_allclose(b[..., 0], (base ** np.array([1.0, 2.0, 0.5])).astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(a[..., 1:], b[..., 1:])


def test_the_planners_lookahead_reads_the_exponent_of_the_concept():
    plain, memory = reviewed_memory(EncoderConfig(num_concepts=2))
    scaled, _ = reviewed_memory(EncoderConfig(num_concepts=2, concept_recall_exponent=(1.0, 3.0)))
    t = np.full(2, 5 * DAY)
    a, b = plain.expected_recall_gain(memory, t), scaled.expected_recall_gain(memory, t)
    assert a[0, 0] == b[0, 0] and a[0, 1] != b[0, 1]  # only the concept with k != 1 changes


def test_the_config_keeps_the_exponents_through_json_and_they_change_the_identity():
    config = EncoderConfig(num_concepts=3, concept_recall_exponent=(0.5, 1.0, 2.0))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["concept_recall_exponent"] == [0.5, 1.0, 2.0]
    assert EncoderConfig.from_dict(data) == config
    plain = EncoderConfig(num_concepts=3)
    assert "concept_recall_exponent" not in plain.to_dict()  # older configs keep their dict and identity
    assert encoder_identity(config, context_length=20) != encoder_identity(plain, context_length=20)
    assert config.with_num_concepts(4).concept_recall_exponent == (0.5, 1.0, 2.0, 1.0)
    assert config.with_num_concepts(2).concept_recall_exponent == (0.5, 1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_concepts": 3, "concept_recall_exponent": (1.0, 2.0)}, "2 exponents for 3 concepts"),
    ({"num_concepts": 2, "concept_recall_exponent": (1.0, 0.0)}, "finite and > 0"),
    ({"num_concepts": 2, "concept_recall_exponent": (1.0, float("nan"))}, "finite and > 0"),
    ({"num_concepts": 2, "estimator": "halflife", "concept_recall_exponent": (1.0, 1.0)}, "does not read it"),
])
def test_bad_exponents_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**kwargs)


def test_the_fit_recovers_known_exponents_and_keeps_the_prior_where_there_are_no_reviews():
    rng = np.random.default_rng(0)
    n = 40_000
    concept = rng.integers(0, 3, n)  # concept 3 has no reviews
    p = rng.uniform(0.2, 0.95, n)
    true_k = np.array([0.5, 1.0, 2.5, 1.0])
    correct = rng.random(n) < p ** true_k[concept]
    k = fit_concept_recall_exponents(p=p, correct=correct, concept=concept, num_concepts=4)
    np.testing.assert_allclose(k[:3], true_k[:3], rtol=0.08)
    assert k[3] == 1.0


def test_few_reviews_are_pulled_towards_one_by_the_prior():
    # one concept answered wrong at a high recall: the likelihood alone would push k to the grid's edge
    k_one = fit_concept_recall_exponents(p=[0.9], correct=[False], concept=[0], num_concepts=1)[0]
    k_many = fit_concept_recall_exponents(p=[0.9] * 50, correct=[False] * 50, concept=[0] * 50, num_concepts=1)[0]
    assert 1.0 < k_one < k_many


def test_the_fit_refuses_bad_input():
    with pytest.raises(ValueError, match="equal lengths"):
        fit_concept_recall_exponents(p=[0.5, 0.5], correct=[True], concept=[0, 0], num_concepts=1)
    with pytest.raises(ValueError, match="positions must be in"):
        fit_concept_recall_exponents(p=[0.5], correct=[True], concept=[2], num_concepts=2)
    with pytest.raises(ValueError, match="finite"):
        fit_concept_recall_exponents(p=[float("nan")], correct=[True], concept=[0], num_concepts=1)
    with pytest.raises(ValueError, match="prior_sd"):
        fit_concept_recall_exponents(p=[0.5], correct=[True], concept=[0], num_concepts=1, prior_sd=0.0)


def test_the_fitted_encoder_ranks_the_simulated_concepts_by_their_difficulty():
    """Built-in students share a difficulty per concept (a half-life divisor): the exponents fitted to their log
    follow it."""
    log = generate_logs(num_users=150, interactions=60, num_concepts=8, seed=5)
    config, _ = fit_encoder_config(learner=log.learner, concept=log.concept, t=log.t, correct=log.correct,
                                   grade=log.grade, num_concepts=8, concept_exponents=True)
    difficulty = Cohort(num_students=1, num_concepts=8, interactions=1, seed=5).difficulty
    assert np.corrcoef(np.log(config.concept_recall_exponent), np.log(difficulty))[0, 1] > 0.8
    unfitted, _ = fit_encoder_config(learner=log.learner, concept=log.concept, t=log.t, correct=log.correct,
                                     grade=log.grade, num_concepts=8)
    assert unfitted.concept_recall_exponent is None  # the default
    # the exponents leave FSRS-6's own parameters as they were
    assert unfitted.fsrs6_parameters == config.fsrs6_parameters


def test_the_calibration_replay_applies_each_concepts_exponent():
    from training.rl.calibration import recall_before_reviews

    log = generate_logs(num_users=30, interactions=40, num_concepts=4, seed=2)
    plain = EncoderConfig(num_concepts=4)
    scaled = EncoderConfig(num_concepts=4, concept_recall_exponent=(0.5, 1.0, 2.0, 3.0))
    columns = dict(learner=log.learner, concept=log.concept, t=log.t, correct=log.correct, grade=log.grade)
    p, first = recall_before_reviews(config=plain, **columns)
    q, first_q = recall_before_reviews(config=scaled, **columns)
    np.testing.assert_array_equal(first, first_q)
    np.testing.assert_allclose(q, p ** np.array([0.5, 1.0, 2.0, 3.0])[log.concept], rtol=1e-12)
    # and it is the full encoder's recall before each review
    encoder = StateEncoder(scaled)
    memory = encoder.init_memory(30)
    for k in range(40):  # the log is sorted by (learner, time)
        idx = np.arange(30) * 40 + k
        np.testing.assert_allclose(q[idx], encoder.recall(memory, log.t[idx])[np.arange(30), log.concept[idx]],
                                   rtol=1e-12)
        encoder.update(memory, np.arange(30), log.concept[idx], log.t[idx], log.correct[idx], log.grade[idx])


def test_reviews_at_recall_0_or_1_say_nothing_of_the_exponent():
    # wrong answers at p = 1 (1 ** k = 1 whatever k) must not push k up
    k = fit_concept_recall_exponents(p=[1.0] * 5 + [0.0] * 5, correct=[False] * 10, concept=[0] * 10, num_concepts=1)
    assert k == (1.0,)
