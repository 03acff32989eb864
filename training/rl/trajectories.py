"""Review rows -> trajectories for offline RL (NumPy only).

A trajectory is one learner's reviews in time order: per step the encoded state before the review,
the concept reviewed (the action), the reward and the return-to-go.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrajectoryDataset:
    """Flat, episode-concatenated arrays; episode e spans rows episode_starts[e]:episode_starts[e+1].

    states float32 [N, S]; actions int64 [N]; rewards float32 [N]; returns_to_go float32 [N];
    timesteps int64 [N] (step index within the episode, 0-based); episode_starts int64 [E + 1].
    concept_keys: action index -> concept key. encoder: the StateEncoder config dict that made the states.
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    returns_to_go: np.ndarray
    timesteps: np.ndarray
    episode_starts: np.ndarray
    concept_keys: list[str] = field(default_factory=list)
    encoder: dict = field(default_factory=dict)
