"""The training data's thresholds: too few learners (episodes) or reviews per concept are warned about."""
from __future__ import annotations

from training.data_sufficiency import MIN_EPISODES, MIN_REVIEWS_PER_CONCEPT, data_warnings, training_data_summary


def test_one_learner_on_a_610_concept_deck_is_warned_twice():
    warnings = data_warnings(episodes=1, steps=6220, concepts=610)
    assert len(warnings) == 2
    assert warnings[0].startswith("too few learners to learn from: 1 episode (")
    assert "6220 for 610 concepts (10.2 per concept" in warnings[1]


def test_enough_learners_and_reviews_give_no_warning():
    assert data_warnings(episodes=MIN_EPISODES, steps=MIN_REVIEWS_PER_CONCEPT * 20, concepts=20) == []
    assert data_warnings(episodes=MIN_EPISODES - 1, steps=10**6, concepts=20) != []


def test_the_summary_reads_a_datasets_statistics():
    summary = training_data_summary(statistics={"episodes": 300, "steps": 18000}, concepts=20)
    assert summary == {"episodes": 300, "steps": 18000, "concepts": 20, "warnings": []}
