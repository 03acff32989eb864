"""The encoder's FSRS-6 estimator: fitted per curriculum, equal to fsrs6.py on the same reviews; configs exported
before FSRS-6 keep serving with the half-life estimator and keep their identity."""
import json

import numpy as np
import pytest

from training.rl.encoder import (
    EncodedLearnerState, EncoderConfig, StateEncoder, effective_grade, encoder_identity, fit_encoder_config, fsrs6,
)
from training.rl.simulator import generate_logs

C = 6
# exported before FSRS-6 (no "estimator" key), and its identity as that code computed it (context length 20)
OLD_FORMAT = {
    "num_concepts": 3, "horizon_s": 86400.0, "initial_stability_s": [86400.0, 129600.0, 172800.0, 259200.0],
    "initial_difficulty": 5.0, "difficulty_step": 0.5, "growth": 6.0, "recall_exponent": 1.0,
    "grade_factor": [0.0, 0.7, 1.0, 1.3], "lapse_factor": 0.5, "max_stability_s": 31536000.0,
    "concept_stability": [0.5, 1.0, 2.0], "features": ["recall", "elapsed", "reviews", "stability"],
}
OLD_IDENTITY = "8744d104a66c84a2a06b9921df0b5dd68ff0f6deb46ec0e76dbb35d1ec17989d"


@pytest.fixture(scope="module")
def log():
    return generate_logs(num_users=200, interactions=60, num_concepts=C, seed=11)


@pytest.fixture(scope="module")
def fitted(log):
    config, fit = fit_encoder_config(learner=log.learner, concept=log.concept, t=log.t, correct=log.correct,
                                     grade=log.grade, num_concepts=C)
    return config, fit


def test_the_fit_stores_fitted_parameters_and_a_same_day_table(fitted):
    config, fit = fitted
    assert fit.fitted and config.estimator == "fsrs6"
    assert config.fsrs6_parameters == fit.parameters != fsrs6.DEFAULT_PARAMETERS
    assert config.fsrs6_same_day_stability == fit.same_day_stability and len(config.fsrs6_same_day_stability) == 4
    assert config.fsrs6_same_day_recall is None  # fits give the same-day stabilities, not the constant table


def test_the_encoder_with_fitted_fsrs6_equals_fsrs6_retrievability_on_the_same_reviews(log, fitted):
    config, _ = fitted
    encoder = StateEncoder(config)
    learners, steps = 200, 60
    memory = encoder.init_memory(learners)
    before = np.empty(learners * steps)
    for k in range(steps):  # the log is sorted by (learner, time): every learner's k-th review in one batch
        idx = np.arange(learners) * steps + k
        before[idx] = encoder.recall(memory, log.t[idx])[np.arange(learners), log.concept[idx]]
        encoder.update(memory, np.arange(learners), log.concept[idx], log.t[idx], log.correct[idx], log.grade[idx])
    replayed = fsrs6.replay(log.learner, log.concept, log.t, effective_grade(log.correct, log.grade),
                            w=config.fsrs6_parameters, same_day_stability=config.fsrs6_same_day_stability)
    assert config.concept_recall_exponent is None  # not fitted by default (test_concept_exponents.py)
    np.testing.assert_allclose(before, replayed["p"], rtol=1e-12, atol=1e-15)
    assert (replayed["p"] > 0).mean() > 0.5  # most reviews are repeats: the comparison is not all zeros
    # and the state's recall feature is that recall (float32)
    states = encoder.encode(memory, log.t[np.arange(learners) * steps + steps - 1] + 3 * 86400.0)
    recall = encoder.recall(memory, log.t[np.arange(learners) * steps + steps - 1] + 3 * 86400.0)
    np.testing.assert_allclose(encoder.recall_from_states(states), recall, atol=1e-7)


def test_fitted_fsrs6_beats_the_constant_predictor_on_the_later_reviews(log, fitted):
    config, _ = fitted
    p = fsrs6.replay(log.learner, log.concept, log.t, effective_grade(log.correct, log.grade),
                     w=config.fsrs6_parameters, same_day_stability=config.fsrs6_same_day_stability)
    by_time = np.argsort(log.t, kind="stable")
    test = by_time[int(0.7 * log.t.size):]
    test = test[~p["first"][test]]
    y = log.correct[test].astype(float)
    model = np.clip(p["p"][test], 1e-6, 1 - 1e-6)
    constant = np.clip(log.correct[by_time[: int(0.7 * log.t.size)]].mean(), 1e-6, 1 - 1e-6)

    def log_loss(q):
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    assert log_loss(model) < log_loss(np.full_like(y, constant)) - 0.02


def test_fsrs6_config_round_trips_and_its_identity_follows_the_parameters(fitted):
    config, _ = fitted
    data = json.loads(json.dumps(config.to_dict()))
    assert data["estimator"] == "fsrs6" and EncoderConfig.from_dict(data) == config
    assert encoder_identity(EncoderConfig.from_dict(data), context_length=20) == encoder_identity(config, context_length=20)
    w = list(config.fsrs6_parameters)
    w[20] = min(w[20] + 0.01, fsrs6.UPPER_BOUNDS[20])
    others = [EncoderConfig(num_concepts=C, fsrs6_parameters=w, fsrs6_same_day_stability=config.fsrs6_same_day_stability),
              EncoderConfig(num_concepts=C, fsrs6_parameters=config.fsrs6_parameters),
              EncoderConfig(num_concepts=C)]
    identities = {encoder_identity(c, context_length=20) for c in [config, *others]}
    assert len(identities) == 4


def test_fsrs6_config_refuses_half_life_parameters_and_bad_fsrs6_values():
    with pytest.raises(ValueError, match="growth"):
        EncoderConfig(num_concepts=2, growth=5.0)
    with pytest.raises(ValueError, match="concept_stability"):
        EncoderConfig(num_concepts=2, concept_stability=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"parameters\[20\]"):
        EncoderConfig(num_concepts=2, fsrs6_parameters=list(fsrs6.DEFAULT_PARAMETERS[:20]) + [5.0])
    with pytest.raises(ValueError, match="same_day_recall"):
        EncoderConfig(num_concepts=2, fsrs6_same_day_recall=(0.5, 0.5, 1.5, 0.5))
    with pytest.raises(ValueError, match="fsrs6_parameters"):
        EncoderConfig(num_concepts=2, estimator="halflife", fsrs6_parameters=fsrs6.DEFAULT_PARAMETERS)
    with pytest.raises(ValueError, match="estimator"):
        EncoderConfig(num_concepts=2, estimator="sm2")


def test_one_same_day_rule_per_config_and_configs_with_the_old_table_still_load():
    with pytest.raises(ValueError, match="same_day_stability"):
        EncoderConfig(num_concepts=2, fsrs6_same_day_stability=(0.1, 0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="one same-day rule"):
        EncoderConfig(num_concepts=2, fsrs6_same_day_recall=(0.5,) * 4, fsrs6_same_day_stability=(0.1,) * 4)
    with pytest.raises(ValueError, match="fsrs6_parameters"):  # the half-life estimator reads neither
        EncoderConfig(num_concepts=2, estimator="halflife", fsrs6_same_day_stability=(0.1,) * 4)
    table = {"num_concepts": 2, "horizon_s": 86400.0, "estimator": "fsrs6", "fsrs6_same_day_recall": [0.6, 0.7, 0.8, 0.9],
             "features": ["recall", "elapsed", "reviews", "stability"]}
    old = EncoderConfig.from_dict(table)
    assert old.to_dict() == table and old.fsrs6_same_day_stability is None
    encoder = StateEncoder(old)
    memory = encoder.init_memory(1)
    encoder.update(memory, np.array([0]), np.array([1]), np.array([0.0]), np.array([True]), np.array([4]))
    # an hour or six after an Easy: the old table's constant 0.9, whatever the hours
    assert encoder.recall(memory, np.array([3600.0]))[0, 1] == encoder.recall(memory, np.array([21600.0]))[0, 1] == 0.9
    new = EncoderConfig(num_concepts=2, fsrs6_same_day_stability=(0.1, 0.1, 0.1, 0.1))
    encoder = StateEncoder(new)
    memory = encoder.init_memory(1)
    encoder.update(memory, np.array([0]), np.array([1]), np.array([0.0]), np.array([True]), np.array([4]))
    w20 = fsrs6.DEFAULT_PARAMETERS[20]
    factor = 0.9 ** (-1 / w20) - 1
    expected = [(1 + factor * h / 24 / 0.1) ** -w20 for h in (1.0, 6.0)]
    got = [encoder.recall(memory, np.array([h * 3600.0]))[0, 1] for h in (1.0, 6.0)]
    assert got == pytest.approx(expected, abs=1e-12) and got[0] > got[1]


def test_an_old_format_config_keeps_its_estimator_its_identity_and_serves():
    config = EncoderConfig.from_dict(json.loads(json.dumps(OLD_FORMAT)))
    assert config.estimator == "halflife" and config.concept_stability == (0.5, 1.0, 2.0)
    assert config.to_dict() == OLD_FORMAT  # written back as it was
    assert encoder_identity(config, context_length=20) == OLD_IDENTITY
    encoder = StateEncoder(config)
    t0 = 1_700_000_000.0
    state = EncodedLearnerState.new(encoder=encoder, context_length=20)
    state.observe(concept=2, t=t0, correct=False, grade=1)
    first = 86400.0 * 2.0  # initial_stability_s[0] x the concept's factor: the half-life estimator
    assert state.memory.stability[0, 2] == first
    assert state.encode(t0 + first)[2 * 4] == pytest.approx(0.5)
    restored = EncodedLearnerState.from_dict(json.loads(json.dumps(state.to_dict())), encoder=encoder)
    assert np.array_equal(restored.encode(t0 + 3600), state.encode(t0 + 3600))


def test_a_learner_state_stored_before_last_grade_existed_still_loads():
    encoder = StateEncoder(EncoderConfig.from_dict(OLD_FORMAT))
    state = EncodedLearnerState.new(encoder=encoder, context_length=4)
    state.observe(concept=0, t=1_700_000_000.0, correct=True, grade=3)
    data = state.to_dict()
    del data["memory"]["last_grade"]
    restored = EncodedLearnerState.from_dict(data, encoder=encoder)
    assert np.array_equal(restored.encode(1_700_003_600.0), state.encode(1_700_003_600.0))


# An unfitted FSRS-6 config as stored before the default same-day rule existed, and its identity as that code
# computed it (context length 20).
OLD_DEFAULT = {"num_concepts": 3, "horizon_s": 86400.0, "estimator": "fsrs6",
               "features": ["recall", "elapsed", "reviews", "stability"]}
OLD_DEFAULT_IDENTITY = "062ecbfd56225ac1586607f2aebdba3cdb9d0b1a1c447ce82ecada82ff0eb94b"


def _recall_after_a_lapse(config, minutes):
    encoder = StateEncoder(config)
    memory = encoder.init_memory(1)
    encoder.update(memory, np.array([0]), np.array([1]), np.array([0.0]), np.array([False]), np.array([1]))
    return float(encoder.recall(memory, np.array([minutes * 60.0]))[0, 1])


def test_the_default_encoder_lowers_recall_minutes_after_a_lapse():
    """fsrs6.default_same_day_stability: s = 1 minute after Again (the package Scheduler's first learning step), so
    5 minutes after a wrong answer R = (1 + FACTOR * 5) ** -w20 = 0.7605 (w20 = 0.1542), no longer 1.0."""
    config = EncoderConfig(num_concepts=3)
    assert config.fsrs6_same_day_default and config.same_day_stability == (
        1 / 1440, fsrs6.DEFAULT_PARAMETERS[1], fsrs6.DEFAULT_PARAMETERS[2], fsrs6.DEFAULT_PARAMETERS[3])
    w20 = fsrs6.DEFAULT_PARAMETERS[20]
    factor = 0.9 ** (-1 / w20) - 1
    expected = (1 + factor * 5.0) ** -w20
    assert expected == pytest.approx(0.7605, abs=1e-4)
    assert _recall_after_a_lapse(config, 5) == pytest.approx(expected, abs=1e-12) and expected < 0.9
    assert _recall_after_a_lapse(config, 60) < _recall_after_a_lapse(config, 5)  # it keeps falling over the day
    data = json.loads(json.dumps(config.to_dict()))
    assert data["fsrs6_same_day_default"] is True and EncoderConfig.from_dict(data) == config


def test_a_config_stored_before_the_default_rule_keeps_its_dict_identity_and_recall():
    old = EncoderConfig.from_dict(json.loads(json.dumps(OLD_DEFAULT)))
    assert not old.fsrs6_same_day_default and old.same_day_stability is None
    assert old.to_dict() == OLD_DEFAULT
    assert encoder_identity(old, context_length=20) == OLD_DEFAULT_IDENTITY
    assert encoder_identity(EncoderConfig(num_concepts=3), context_length=20) != OLD_DEFAULT_IDENTITY
    assert _recall_after_a_lapse(old, 5) == 1.0  # the package's same-day recall, as it served


def test_the_default_rule_never_changes_a_config_with_its_own_same_day_rule():
    fitted = EncoderConfig(num_concepts=2, fsrs6_same_day_stability=(0.1,) * 4)
    assert not fitted.fsrs6_same_day_default and "fsrs6_same_day_default" not in fitted.to_dict()
    assert fitted == EncoderConfig(num_concepts=2, fsrs6_same_day_stability=(0.1,) * 4, fsrs6_same_day_default=False)
    halflife = EncoderConfig(num_concepts=2, estimator="halflife")
    assert not halflife.fsrs6_same_day_default and "fsrs6_same_day_default" not in halflife.to_dict()
    with pytest.raises(ValueError, match="fsrs6_same_day_default"):
        EncoderConfig(num_concepts=2, fsrs6_same_day_default="yes")


def test_expected_recall_gain_reads_the_half_life_estimator_too():
    """A first review counts as wrong (recall 0 before it): S = initial_stability_s[0] x the concept's factor, so the
    gain a day later is 2 ** (-1 / (1 x factor)): 0.25 and 0.7071 for factors 0.5 and 2; 0 gain needs no review."""
    config = EncoderConfig(num_concepts=2, estimator="halflife", concept_stability=(0.5, 2.0))
    encoder = StateEncoder(config)
    gain = encoder.expected_recall_gain(encoder.init_memory(1), np.array([1_700_000_000.0]))
    assert gain[0] == pytest.approx([0.25, 2 ** -0.5], abs=1e-12)
    with pytest.raises(ValueError, match="horizon_s"):
        encoder.expected_recall_gain(encoder.init_memory(1), np.array([0.0]), horizon_s=-1.0)
