"""FSRS-6 in NumPy against the `fsrs` package, review by review; the same-day rule against hand-computed values."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

fsrs = pytest.importorskip("fsrs")

from training.rl.encoder import fsrs6  # noqa: E402

START = dt.datetime(2025, 1, 6, 8, 0, tzinfo=dt.timezone.utc)
DAY = 86400.0


def package_recall(*, w, reviews):
    """The package's retrievability just before each review (first: 0), driving Scheduler.review_card."""
    scheduler = fsrs.Scheduler(parameters=w, enable_fuzzing=False)
    card = fsrs.Card()
    out = []
    for t, grade in reviews:
        at = START + dt.timedelta(seconds=t)
        out.append(0.0 if card.last_review is None else scheduler.get_card_retrievability(card, at))
        card, _ = scheduler.review_card(card, fsrs.Rating(grade), review_datetime=at)
    return out, card


def random_cards(*, seed: int, cards: int, same_day: bool):
    rng = np.random.default_rng(seed)
    histories = []
    for _ in range(cards):
        t, items = rng.uniform(0, DAY), []
        for _ in range(int(rng.integers(2, 12))):
            items.append((t, int(rng.choice([1, 2, 3, 4], p=[0.2, 0.15, 0.5, 0.15]))))
            gap = rng.uniform(60, 0.9 * DAY) if same_day and rng.random() < 0.3 else rng.uniform(1, 60) * DAY
            t += gap
        histories.append(items)
    return histories


@pytest.mark.parametrize("w", [fsrs6.DEFAULT_PARAMETERS,
                               (0.5, 2.0, 4.0, 12.0, 5.5, 1.1, 2.0, 0.02, 1.5, 0.3, 1.2,
                                1.8, 0.1, 0.4, 2.0, 0.4, 2.5, 0.8, 0.3, 0.2, 0.3)])
@pytest.mark.parametrize("same_day", [False, True])
def test_numpy_retrievability_equals_the_package_review_by_review(w, same_day):
    histories = random_cards(seed=3, cards=40, same_day=same_day)
    learner, concept, t, grade, expected = [], [], [], [], []
    for i, items in enumerate(histories):
        want, _ = package_recall(w=w, reviews=items)
        for (ti, gi), pi in zip(items, want):
            learner.append(i % 5)
            concept.append(i // 5)
            t.append(ti)
            grade.append(gi)
            expected.append(pi)
    assert any(g == 1 for g in grade[1:])  # lapses are covered

    got = fsrs6.replay(np.array(learner), np.array(concept), np.array(t), np.array(grade), w=w)

    np.testing.assert_allclose(got["p"], expected, rtol=0, atol=1e-6)
    assert got["first"].sum() == len(histories)


def test_memory_after_reviews_matches_the_package_card():
    items = [(0.0, 3), (2.5 * DAY, 1), (2.5 * DAY + 600, 3), (9 * DAY, 4), (40 * DAY, 2)]
    _, card = package_recall(w=fsrs6.DEFAULT_PARAMETERS, reviews=items)
    memory = fsrs6.init_memory(1, 2)
    for t, g in items:
        fsrs6.update(memory, [0], [1], [t], [g])

    assert memory.stability[0, 1] == pytest.approx(card.stability, abs=1e-9)
    assert memory.difficulty[0, 1] == pytest.approx(card.difficulty, abs=1e-9)
    assert memory.reviews[0].tolist() == [0, 5] and math.isnan(memory.stability[0, 0])
    later = START + dt.timedelta(seconds=70 * DAY)
    grid = fsrs6.recall_grid(memory, [70 * DAY])
    assert grid[0, 0] == 0.0
    assert grid[0, 1] == pytest.approx(fsrs.Scheduler().get_card_retrievability(card, later), abs=1e-9)


def test_same_day_recall_comes_from_the_table_by_the_previous_grade():
    """Less than a whole day after a review: same_day_recall[previous grade - 1]; a day or more: the curve."""
    table = (0.6, 0.8, 0.9, 0.95)
    w = fsrs6.DEFAULT_PARAMETERS
    got = fsrs6.replay(np.zeros(4, int), np.zeros(4, int), np.array([0.0, 600.0, 1200.0, 1200.0 + 3 * DAY]),
                       np.array([3, 1, 3, 3]), same_day_recall=table)
    # hand-computed: first 0; 600 s after a Good: 0.9; 600 s after an Again: 0.6; then 3 whole days on S
    s = w[2]  # first review Good
    s = s * math.exp(w[17] * (1 - 3 + w[18])) * s ** -w[19]  # same-day Again: factor below 1, no floor
    growth = max(math.exp(w[17] * (3 - 3 + w[18])) * s ** -w[19], 1.0)
    s = s * growth  # same-day Good
    factor = 0.9 ** (-1 / w[20]) - 1
    assert got["p"].tolist()[:3] == [0.0, 0.9, 0.6]
    assert got["p"][3] == pytest.approx((1 + factor * 3 / s) ** -w[20], abs=1e-12)
    without = fsrs6.replay(np.zeros(2, int), np.zeros(2, int), np.array([0.0, 600.0]), np.array([3, 3]))
    assert without["p"][1] == 1.0  # the package's rule: R(0 days) = 1


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="parameters: expected 21"):
        fsrs6.check_parameters([0.1] * 20)
    with pytest.raises(ValueError, match=r"parameters\[20\]"):
        fsrs6.check_parameters(fsrs6.DEFAULT_PARAMETERS[:20] + (0.05,))
    with pytest.raises(ValueError, match="grade: expected 1-4"):
        fsrs6.update(fsrs6.init_memory(1, 1), [0], [0], [0.0], [5])
    with pytest.raises(ValueError, match="same_day_recall"):
        fsrs6.check_same_day_recall([0.5, 1.0, 0.5, 0.5])


def test_same_day_stability_reads_the_power_curve_on_fractional_days_by_the_previous_grade():
    """Less than a whole day after a review: (1 + FACTOR dt / s[previous grade - 1]) ** -w20, dt in fractional
    days; a day or more: the package's whole-day curve on the card's S, as without the rule."""
    short = (0.01, 0.1, 0.5, 2.0)
    w = fsrs6.DEFAULT_PARAMETERS
    t = np.array([0.0, 6 * 3600.0, 6 * 3600.0 + 600.0, 6 * 3600.0 + 600.0 + 2.5 * DAY])
    got = fsrs6.replay(np.zeros(4, int), np.zeros(4, int), t, np.array([3, 1, 3, 3]), same_day_stability=short)
    without = fsrs6.replay(np.zeros(4, int), np.zeros(4, int), t, np.array([3, 1, 3, 3]))
    factor = 0.9 ** (-1 / w[20]) - 1  # 0.98035
    # 6 h after a Good: dt = 0.25 on s = 0.5; 600 s after an Again: dt = 600 / 86400 on s = 0.01
    assert got["p"][1] == pytest.approx((1 + factor * 0.25 / 0.5) ** -w[20], abs=1e-12)
    assert got["p"][1] == pytest.approx(0.94034, abs=1e-5)
    assert got["p"][2] == pytest.approx((1 + factor * (600 / 86400) / 0.01) ** -w[20], abs=1e-12)
    assert got["p"][2] == pytest.approx(0.92305, abs=1e-5)
    assert got["p"][3] == without["p"][3]  # 2.5 days later: floor(2.5) = 2 whole days on the card's S, unchanged
    assert np.array_equal(got["first"], without["first"])


def test_same_day_stability_decays_with_the_hours_and_one_rule_at_a_time():
    memory = fsrs6.init_memory(1, 1)
    fsrs6.update(memory, [0], [0], [0.0], [3])
    short = (0.1, 0.1, 0.1, 0.1)
    hours = np.array([0.0, 1.0, 6.0, 23.0]) * 3600.0
    p = fsrs6.recall(memory, [0] * 4, [0] * 4, hours, same_day_stability=short)
    assert p[0] == 1.0 and np.all(np.diff(p) < 0)
    with pytest.raises(ValueError, match="one same-day rule"):
        fsrs6.recall(memory, [0], [0], [60.0], same_day_stability=short, same_day_recall=(0.5,) * 4)
    with pytest.raises(ValueError, match="same_day_stability"):
        fsrs6.check_same_day_stability([0.1, 0.1, 0.1, 0.0])
    with pytest.raises(ValueError, match="same_day_stability"):
        fsrs6.check_same_day_stability([0.1, 0.1, 0.1])
