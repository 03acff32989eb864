"""A dataset's summary: episodes, returns and how often each concept was practised."""
import json

import pytest

from training.rl.dataset_statistics import dataset_statistics


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
