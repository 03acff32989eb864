"""Fitting FSRS-6: fsrs-rs recovers parameters from a log simulated with them; small logs keep defaults."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fsrs")
pytest.importorskip("fsrs_rs_python")

from training.rl.calibration import log_loss  # noqa: E402
from training.rl.encoder import fsrs6  # noqa: E402
from training.rl.encoder.fsrs_fit import fit_fsrs6, fit_same_day_recall, fit_same_day_stability  # noqa: E402

DAY = 86400.0
# Truth far from the defaults: longer first memories, a steeper curve (w20).
TRUTH = (1.5, 4.0, 10.0, 25.0, 6.0, 0.9, 2.0, 0.01, 1.6, 0.15, 1.0,
         1.6, 0.08, 0.3, 1.8, 0.6, 1.9, 0.5, 0.1, 0.07, 0.45)


def simulate(*, w, cards: int, reviews_per_card: int, seed: int) -> dict[str, np.ndarray]:
    """Each card: a first review at a random time in 60 days, then reviews 1-3x its stability later (whole days)."""
    rng = np.random.default_rng(seed)
    memory = fsrs6.init_memory(cards, 1)
    rows = np.arange(cards)
    zero = np.zeros(cards, dtype=np.int64)
    t = np.floor(rng.uniform(0, 60, cards)) * DAY + rng.integers(0, 3600, cards)
    out = {k: [] for k in ("learner", "concept", "t", "grade", "correct")}
    for k in range(reviews_per_card):
        if k == 0:
            grade = rng.choice([1, 2, 3, 4], size=cards, p=[0.25, 0.15, 0.45, 0.15])
        else:
            p = fsrs6.recall(memory, rows, zero, t, w=w)
            ok = rng.random(cards) < p
            grade = np.where(ok, rng.choice([2, 3, 4], size=cards, p=[0.15, 0.7, 0.15]), 1)
        for key, value in (("learner", rows % 7), ("concept", rows // 7), ("t", t), ("grade", grade), ("correct", grade > 1)):
            out[key].append(np.array(value))
        fsrs6.update(memory, rows, zero, t, grade, w=w)
        t = t + np.maximum(1, np.round(memory.stability[:, 0] * rng.uniform(0.5, 3.0, cards))) * DAY
    return {k: np.concatenate(v) for k, v in out.items()}


def held_out_loss(log, w) -> float:
    got = fsrs6.replay(log["learner"], log["concept"], log["t"], log["grade"], w=w)
    scored = ~got["first"]
    return log_loss(y=log["correct"][scored], p=got["p"][scored])


@pytest.mark.slow
def test_the_fit_recovers_parameters_from_a_log_simulated_with_them():
    train = simulate(w=TRUTH, cards=600, reviews_per_card=6, seed=1)
    test = simulate(w=TRUTH, cards=400, reviews_per_card=6, seed=2)

    fit = fit_fsrs6(**train)

    assert fit.fitted and fit.long_term_reviews == 600 * 5
    truth, fitted, default = (held_out_loss(test, w) for w in (TRUTH, fit.parameters, fsrs6.DEFAULT_PARAMETERS))
    assert fitted <= truth + 0.01
    assert fitted < default - 0.01  # the defaults are 0.02 worse than the truth here


def test_a_small_log_keeps_the_defaults_and_says_so():
    log = simulate(w=TRUTH, cards=20, reviews_per_card=4, seed=3)

    fit = fit_fsrs6(**log)

    assert not fit.fitted and fit.parameters == fsrs6.DEFAULT_PARAMETERS
    assert fit.long_term_reviews == 60 and "60 reviews" in fit.reason and "512" in fit.reason
    assert fit.same_day_recall is None and fit.same_day_reviews == 0


def test_same_day_table_is_the_smoothed_rate_by_previous_grade():
    # after Again: 1 of 3 right; after Good: 3 of 3; none after Hard or Easy; overall 4 / 6
    table = fit_same_day_recall(previous_grade=[1, 1, 1, 3, 3, 3], correct=[1, 0, 0, 1, 1, 1])
    m = 4 / 6
    assert table == pytest.approx(((1 + 2 * m) / 5, m, (3 + 2 * m) / 5, m))
    assert fit_same_day_recall(previous_grade=[], correct=[]) is None


def test_the_fit_counts_same_day_reviews_and_tabulates_them():
    t = np.array([0.0, 600.0, 1200.0, 2 * DAY])
    fit = fit_fsrs6(learner=[0] * 4, concept=[0] * 4, t=t, grade=[1, 1, 3, 3], correct=[0, 0, 1, 1])
    assert fit.same_day_reviews == 2 and fit.long_term_reviews == 1
    # same-day: after Again wrong, after Again right: 1 of 2 after grade 1; overall 1/2
    assert fit.same_day_recall == pytest.approx((0.5, 0.5, 0.5, 0.5))


def test_same_day_stability_is_the_smoothed_maximum_likelihood_by_previous_grade():
    """All at the same elapsed time, R(dt, s) is one number per grade, so the fit's R is the table's smoothed rate
    (k + 2 m) / (n + 2) (hand-computed as in the table test); a grade without reviews gets the overall rate m."""
    w = fsrs6.DEFAULT_PARAMETERS
    dt = np.full(6, 0.25)
    stability = fit_same_day_stability(previous_grade=[1, 1, 1, 3, 3, 2], elapsed_days=dt,
                                       correct=[1, 0, 0, 1, 1, 0], w=w)
    m = 3 / 6
    recall = fsrs6.forgetting_curve(0.25, np.asarray(stability), w)
    assert recall == pytest.approx(((1 + 2 * m) / 5, (0 + 2 * m) / 3, (2 + 2 * m) / 4, m), abs=1e-6)
    assert fit_same_day_stability(previous_grade=[], elapsed_days=[], correct=[], w=w) is None


def test_same_day_stability_recovers_the_stability_that_made_the_outcomes():
    rng = np.random.default_rng(5)
    w = fsrs6.DEFAULT_PARAMETERS
    truth = (0.003, 0.05, 0.02, 0.4)
    grade = rng.integers(1, 5, size=40_000)
    dt = rng.uniform(0.0, 0.9, size=grade.size)
    correct = rng.random(grade.size) < fsrs6.forgetting_curve(dt, np.asarray(truth)[grade - 1], w)
    fitted = fit_same_day_stability(previous_grade=grade, elapsed_days=dt, correct=correct, w=w)
    assert np.asarray(fitted) == pytest.approx(truth, rel=0.15)


def test_the_fit_carries_same_day_stabilities_on_its_own_curve():
    t = np.array([0.0, 1800.0, 3600.0, 2 * DAY])
    fit = fit_fsrs6(learner=[0] * 4, concept=[0] * 4, t=t, grade=[1, 1, 3, 3], correct=[0, 0, 1, 1])
    # both same-day reviews follow an Again: 1800 s later wrong, then right; the fit is 1 of 2 at one dt
    assert fsrs6.forgetting_curve(1800 / 86400, fit.same_day_stability[0], fit.parameters) == pytest.approx(0.5, abs=1e-6)
    assert fit.to_dict()["same_day_stability"] == list(fit.same_day_stability)
