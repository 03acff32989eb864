"""Fixtures of the learning core's tests: a small simulated review log and its trajectories."""
import pytest

from training.rl.review_columns import ReviewColumns
from training.rl.simulator import generate_logs
from training.rl.trajectories import TrajectoryDataset, trajectories_from_columns

C = 6  # test_trajectories.py relies on it


@pytest.fixture(scope="module")
def log() -> ReviewColumns:
    """12 learners x 40 reviews of C concepts, from the simulator (seed 9)."""
    return generate_logs(num_users=12, interactions=40, num_concepts=C, seed=9)


@pytest.fixture(scope="module")
def dataset(log) -> TrajectoryDataset:
    """The log's trajectories, concept keys c0..c5."""
    return trajectories_from_columns(log, num_concepts=C, concept_keys=[f"c{i}" for i in range(C)])
