"""Whether a training log has enough to learn from: the thresholds below which a run, the command and the
orchestrator warn (they warn, never refuse: an operator may train on purpose, e.g. to smoke-test serving).

A trajectory (episode) is one learner's reviews of a curriculum in time order, so "episodes" counts learners. A
Decision Transformer learns which concept to offer from how the return differed between episodes; with a handful of
episodes it can only copy those learners' order (Chen et al. 2021 train on thousands of episodes; the demo's
synthetic cohort has 300). The thresholds are deliberately low: below them the evaluation is not worth reading.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIN_EPISODES = 50  # learners (one episode each) in the training data
MIN_REVIEWS_PER_CONCEPT = 20  # reviews (steps) per concept of the action space, over all episodes


def data_warnings(*, episodes: int, steps: int, concepts: int) -> list[str]:
    """One sentence per threshold the training data is below: ``episodes`` (learners) < MIN_EPISODES, ``steps``
    (reviews) < MIN_REVIEWS_PER_CONCEPT x ``concepts``. [] when there is enough (or nothing to judge: 0 concepts)."""
    warnings = []
    if episodes < MIN_EPISODES:
        episodes_text = f"{episodes} episode{'' if episodes == 1 else 's'}"
        warnings.append(f"too few learners to learn from: {episodes_text} (one per learner), fewer than "
                        f"{MIN_EPISODES}; a policy trained on them can only copy their order, and its evaluation "
                        f"says little")
    if concepts > 0 and steps < MIN_REVIEWS_PER_CONCEPT * concepts:
        warnings.append(f"too few reviews to learn from: {steps} for {concepts} concepts ({steps / concepts:.1f} per "
                        f"concept, fewer than {MIN_REVIEWS_PER_CONCEPT})")
    return warnings


def training_data_summary(*, statistics: Mapping[str, Any], concepts: int) -> dict[str, Any]:
    """``{"episodes", "steps", "concepts", "warnings"}`` from a dataset's statistics
    (training.rl.dataset_statistics): what a run records in its metrics as ``"training_data"``."""
    episodes, steps = int(statistics.get("episodes") or 0), int(statistics.get("steps") or 0)
    return {"episodes": episodes, "steps": steps, "concepts": int(concepts),
            "warnings": data_warnings(episodes=episodes, steps=steps, concepts=int(concepts))}
