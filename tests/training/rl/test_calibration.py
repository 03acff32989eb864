"""Calibration metrics against hand-computed values, and the encoder's recall just before each review."""
from __future__ import annotations

import math

import numpy as np
import pytest

from training.rl.calibration import (
    auc, benchmark_bins, log_loss, moving_average, recall_before_reviews, reliability, rmse_bins, score,
)
from training.rl.encoder import EncoderConfig, StateEncoder


def test_log_loss_matches_the_hand_computed_value():
    expected = -(math.log(0.8) + math.log(0.6) + math.log(0.5)) / 3  # 0.475707...

    assert log_loss(y=[1, 0, 1], p=[0.8, 0.4, 0.5]) == pytest.approx(expected, abs=1e-12)


def test_log_loss_clips_certain_mistakes_instead_of_returning_infinity():
    assert log_loss(y=[1, 0], p=[0.0, 1.0]) == pytest.approx(-math.log(1e-6), rel=1e-6)


def test_auc_counts_ties_as_one_half():
    # positives .9 .5 .5 against negatives .9 .1: pairs .5 + 1 + 0 + 1 + 0 + 1 = 3.5 of 6
    assert auc(y=[1, 0, 1, 0, 1], p=[0.9, 0.9, 0.5, 0.1, 0.5]) == pytest.approx(3.5 / 6)


def test_auc_of_a_constant_is_one_half_and_of_one_class_undefined():
    assert auc(y=[1, 0, 1, 0], p=[0.7] * 4) == pytest.approx(0.5)
    assert math.isnan(auc(y=[1, 1], p=[0.2, 0.3]))


def test_auc_of_a_perfect_ranking_is_one():
    assert auc(y=[0, 0, 1, 1], p=[0.1, 0.2, 0.3, 0.9]) == pytest.approx(1.0)


def test_rmse_bins_weights_each_bin_by_its_count():
    y = [1, 0, 1, 1]
    p = [0.9, 0.2, 0.7, 0.1]
    # bins: reviews 0 and 1 share one, 2 and 3 another: (obs .5 vs .55), (obs 1 vs .4)
    assert rmse_bins(y=y, p=p, bins=[0, 0, 1, 1]) == pytest.approx(math.sqrt((2 * 0.05**2 + 2 * 0.6**2) / 4))


def test_benchmark_bins_group_by_elapsed_days_review_index_and_lapses():
    ids = benchmark_bins(elapsed_days=[1.0, 3.0, 4.0, 0.01, 0.5, 1.0], review_index=[1, 1, 1, 1, 1, 2],
                         lapses=[0, 0, 0, 0, 0, 0])
    # 1 and 3 days round to 2.48; 4 days to 8.98; same-day reviews share 0; index 2 (vs 1) to another bin
    assert ids[0] == ids[1] and ids[2] != ids[0] and ids[3] == ids[4] != ids[0] and ids[5] != ids[0]


def test_reliability_puts_a_certain_prediction_in_the_last_bin():
    table = reliability(y=[1, 0], p=[1.0, 0.0], bins=4)

    assert [row["count"] for row in table] == [1, 0, 0, 1]
    assert table[3] == {"lo": 0.75, "hi": 1.0, "count": 1, "predicted": 1.0, "observed": 1.0}
    assert table[1]["predicted"] is None


def test_score_reports_every_metric():
    result = score(y=[1, 0, 1], p=[0.8, 0.4, 0.5], bins=[0, 0, 0])

    assert set(result) == {"n", "log_loss", "auc", "rmse_bins", "mean_predicted", "mean_observed"}
    assert result["n"] == 3 and result["auc"] == pytest.approx(1.0)
    assert result["mean_observed"] == pytest.approx(2 / 3)


def test_moving_average_is_per_learner_and_starts_at_the_given_value():
    got = moving_average(learner=[0, 0, 1, 0], y=[1, 0, 0, 1], start=0.5, alpha=0.5)
    assert got.tolist() == [0.5, 0.75, 0.5, 0.375]


def test_outcomes_and_predictions_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length: 2 != 3"):
        log_loss(y=[1, 0], p=[0.1, 0.2, 0.3])


def test_a_second_review_one_half_life_later_is_predicted_at_one_half():
    config = EncoderConfig(num_concepts=3, estimator="halflife")
    good_first_half_life = config.initial_stability_s[2]  # a first review graded 3

    p, first = recall_before_reviews(
        config=config, learner=np.array([7, 7, 7]), concept=np.array([2, 0, 2]),
        t=np.array([1000.0, 1500.0, 1000.0 + good_first_half_life]), correct=np.array([True, True, True]),
        grade=np.array([3, 3, 3]),
    )

    assert first.tolist() == [True, True, False]
    assert p.tolist() == pytest.approx([0.0, 0.0, 0.5])


@pytest.mark.parametrize("fitted", [False, True], ids=["median encoder", "fitted encoder"])
def test_recall_before_reviews_equals_the_full_encoder_replayed_review_by_review(fitted):
    rng = np.random.default_rng(3)
    n, concepts = 400, 6
    learner = np.sort(rng.integers(0, 5, n))
    t = np.empty(n)
    for l in np.unique(learner):
        rows = learner == l
        t[rows] = 1.7e9 + np.cumsum(rng.exponential(20_000.0, rows.sum()))
    concept = rng.integers(0, concepts, n)
    correct = rng.random(n) < 0.7
    grade = np.where(correct, rng.integers(2, 5, n), 1)
    grade[rng.random(n) < 0.2] = 0  # unknown grades too
    config = EncoderConfig(estimator="halflife", num_concepts=concepts,
                           concept_stability=(0.25, 1.0, 3.0, 0.5, 8.0, 1.5) if fitted else None)

    p, first = recall_before_reviews(config=config, learner=learner, concept=concept, t=t, correct=correct, grade=grade)

    encoder = StateEncoder(config)
    expected = np.empty(n)
    for l in np.unique(learner):
        memory = encoder.init_memory(1)
        for i in np.flatnonzero(learner == l):
            expected[i] = encoder.recall(memory, t[i : i + 1])[0, concept[i]]
            encoder.update(memory, np.array([0]), concept[i : i + 1], t[i : i + 1], correct[i : i + 1], grade[i : i + 1])
    np.testing.assert_allclose(p, expected, rtol=1e-12, atol=0)
    assert first.sum() == len({(l, c) for l, c in zip(learner, concept)})


def test_a_fitted_encoder_leaves_positions_beyond_its_factors_unfitted():
    """Positions can have gaps (a deleted concept): a review of a position past the fitted factors gets factor 1."""
    fitted = EncoderConfig(estimator="halflife", num_concepts=2, concept_stability=(0.5, 2.0))
    args = dict(learner=np.array([1, 1, 1, 1]), concept=np.array([5, 1, 5, 1]),
                t=np.array([0.0, 1.0, 86400.0, 86401.0]), correct=np.array([False, False, True, True]),
                grade=np.array([1, 1, 3, 3]))
    p, first = recall_before_reviews(config=fitted, **args)
    assert first.tolist() == [True, True, False, False]
    assert p[2] == pytest.approx(0.5) and p[3] == pytest.approx(2 ** -0.5)  # S0[0] = 1 day; x1 and x2
