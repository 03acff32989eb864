"""Outcomes per arm: means with intervals from the reviews that follow served recommendations, the difference, the
sample size still needed, and the sentence."""
import math

import pytest

from curriculum.experiments.outcomes import Mean, compare


def test_a_mean_and_its_interval_are_the_normal_ones():
    m = Mean.of([1.0, 0.0, 1.0, 1.0])
    sd = math.sqrt(((0.25 ** 2) * 3 + 0.75 ** 2) / 3)
    assert (m.mean, m.n, m.sd) == (0.75, 4, pytest.approx(sd))
    assert m.ci95 == pytest.approx((0.75 - 1.959964 * sd / 2, 0.75 + 1.959964 * sd / 2), abs=1e-6)
    assert Mean.of([]).mean is None and Mean.of([0.5]).ci95 is None


def test_the_difference_its_interval_and_the_learners_still_needed_by_hand():
    control, candidate = Mean(0.60, None, 400, 0.2), Mean(0.631, None, 400, 0.2)

    d = compare(control=control, candidate=candidate, label="B", min_effect=0.01)

    se = math.sqrt(0.04 / 400 * 2)
    assert d.difference == pytest.approx(0.031)
    assert d.ci95 == pytest.approx((0.031 - 1.959964 * se, 0.031 + 1.959964 * se), abs=1e-6)
    # (1.959964 + 0.841621)^2 * (0.04 + 0.04) / 0.01^2 = 6279.1 -> 6280 per arm, 400 served
    assert d.more_learners_per_arm == 6280 - 400
    assert d.sentence == "B is ahead of A by 0.031 [0.003, 0.059]; about 5,880 more learners per arm to confirm a 0.01 difference"


def test_too_few_learners_say_so():
    d = compare(control=Mean.of([0.5]), candidate=Mean.of([0.4, 0.6]), label="C", min_effect=0.01)
    assert d.difference is None and "not enough learners" in d.sentence
