"""Sticky assignment: a learner keeps its arm; the split over learners is the traffic split."""
import numpy as np
import pytest

from curriculum.experiments.assignment import assign, bucket


def test_assignment_is_stable_and_independent_between_experiments():
    first = [assign(experiment_id=3, learner=f"u{i}", weights=[50, 50]) for i in range(1000)]
    assert first == [assign(experiment_id=3, learner=f"u{i}", weights=[50, 50]) for i in range(1000)]
    other = [assign(experiment_id=4, learner=f"u{i}", weights=[50, 50]) for i in range(1000)]
    assert 0.4 < np.mean(np.array(first) == np.array(other)) < 0.6


def test_the_split_on_10000_learners_is_within_tolerance():
    weights = [50, 30, 20]
    arms = np.array([assign(experiment_id=11, learner=f"learner-{i}", weights=weights) for i in range(10_000)])
    shares = np.bincount(arms, minlength=3) / len(arms)
    # 4 standard errors of a proportion at 10,000 learners: at most 0.02
    np.testing.assert_allclose(shares, [0.5, 0.3, 0.2], atol=0.02)


def test_a_zero_share_arm_gets_nobody_and_bad_weights_are_refused():
    assert {assign(experiment_id=1, learner=f"u{i}", weights=[0, 100, 0]) for i in range(500)} == {1}
    with pytest.raises(ValueError, match="weights"):
        assign(experiment_id=1, learner="u", weights=[0, 0])


def test_the_bucket_is_sha256_of_experiment_and_learner():
    import hashlib

    digest = hashlib.sha256(b"7:u-42").digest()
    assert bucket(experiment_id=7, learner="u-42") == int.from_bytes(digest[:8], "big") / 2**64


def test_the_learner_sample_is_uniform_seeded_and_not_the_first_by_id():
    from curriculum.experiments.assignment import sample

    learners = [f"u{i:05d}" for i in range(10_000)]
    picked = sample(learners, 1000, seed=3)
    assert len(set(picked)) == 1000 and set(picked) <= set(learners)
    assert picked == sample(reversed(learners), 1000, seed=3)  # the order learners come in does not matter
    assert picked != sample(learners, 1000, seed=4) and picked != learners[:1000]
    # uniform over ids: each tenth of them holds about a tenth of the sample (chi-square, 9 df, 0.1% level 27.9)
    counts = np.bincount([int(p[1:]) // 1000 for p in picked], minlength=10)
    assert ((counts - 100) ** 2 / 100).sum() < 27.9, counts
    # over many seeds each learner is picked with probability k / n: u00000's frequency, 400 seeds, p = 0.1
    hits = sum("u00000" in sample(learners[:50], 5, seed=s) for s in range(400))
    assert abs(hits / 400 - 0.1) < 0.05
    assert sample(learners[:3], 10) == sample(learners[:3], 3) and len(sample(learners[:3], 10)) == 3
    with pytest.raises(ValueError, match="k"):
        sample(learners, -1)
