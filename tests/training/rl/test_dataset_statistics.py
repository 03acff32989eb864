"""A dataset's summary: episodes, returns and how often each concept was practised."""
import json

import numpy as np
import pytest

from training.rl.dataset_statistics import HISTOGRAM_BINS, dataset_statistics, histogram
from training.rl.simulator import generate_logs
from training.rl.trajectories import trajectories_from_columns


def test_dataset_statistics_summarise_episodes_returns_and_actions(dataset):
    stats = dataset_statistics(dataset)
    json.dumps(stats)
    returns = dataset.returns_to_go[dataset.episode_starts[:-1]]
    assert stats["episodes"] == 12 and stats["steps"] == 480 and stats["state_dim"] == 4 * len(dataset.concept_keys)
    assert stats["return"]["mean"] == pytest.approx(float(returns.mean()))
    assert stats["return"]["min"] <= stats["return"]["p10"] <= stats["return"]["p50"] <= stats["return"]["p90"]
    assert stats["return"]["p90"] <= stats["return"]["max"]
    counts = stats["actions"]["counts"]
    assert sum(counts.values()) == 480 and set(counts) == set(dataset.concept_keys)
    assert 0 < stats["actions"]["normalised_entropy"] <= 1


def test_one_episode_has_one_length_bin_around_its_length():
    """An extracted dataset of one learner's reviews: one bin (L - 0.5, L + 0.5), not numpy's twenty of one value."""
    log = generate_logs(num_users=1, interactions=300, num_concepts=4, seed=2)
    stats = dataset_statistics(trajectories_from_columns(log, num_concepts=4, concept_keys=["a", "b", "c", "d"]))
    assert stats["episodes"] == 1
    assert stats["episode_length"]["histogram"] == {"edges": [299.5, 300.5], "counts": [1]}
    assert len(stats["return"]["histogram"]["counts"]) == 1  # one return: one bin too


def test_equal_lengths_have_one_bin_and_others_whole_number_bins(dataset):
    stats = dataset_statistics(dataset)  # 12 learners x 40 reviews
    assert stats["episode_length"]["histogram"] == {"edges": [39.5, 40.5], "counts": [12]}
    # whole lengths: at most HISTOGRAM_BINS bins of equal integer width, edges between integers
    lengths = np.array([1.0, 2.0, 2.0, 7.0, 100.0])
    bins = histogram(lengths, integers=True)
    assert len(bins["counts"]) == HISTOGRAM_BINS and sum(bins["counts"]) == 5
    assert bins["edges"][0] == 0.5 and bins["edges"][-1] == 100.5 and np.allclose(np.diff(bins["edges"]), 5.0)
    assert histogram(np.array([3.0, 5.0, 7.0]), integers=True) == {
        "edges": [2.5, 3.5, 4.5, 5.5, 6.5, 7.5], "counts": [1, 0, 1, 0, 1]}
