"""The evaluation's thread pools: sized as asked while it runs, restored after, and its results the same for any
number of threads."""
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
from training.rl.checkpoint import export_artifacts
from training.rl.cpu_threads import limited_threads
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite
from training.rl.encoder import EncoderConfig
from training.rl.evaluation import evaluate

C = 8


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> DTLite:
    """An untrained DTLite large enough for BLAS to split its products over threads (hidden 128)."""
    folder = tmp_path_factory.mktemp("policy")
    encoder = EncoderConfig(num_concepts=C)
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=encoder.state_dim, action_dim=C, hidden_dim=128, num_layers=2,
                                         num_heads=4, context_length=6, max_timestep=64, return_scale=1.0)).eval()
    export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i}" for i in range(C)],
                     encoder=encoder.to_dict(), target_return=0.5)
    return DTLite.load(folder / WEIGHTS_FILE, folder / CONFIG_FILE)


def test_evaluation_results_do_not_depend_on_the_number_of_threads(policy):
    # (more threads than the 2 cores of the development machine make this test crawl, which is the point of
    # the evaluation's one-thread default)
    runs = [evaluate(policy=policy, num_concepts=C, students=20, interactions=6, seed=3, threads=threads)
            for threads in (1, 2)]
    assert runs[0]["results"]["dt"]["mean"] > 0
    assert runs[1] == runs[0]


class RecordingPolicy:
    """Wraps a policy and records the BLAS and PyTorch pool sizes it runs under."""

    def __init__(self, policy: DTLite) -> None:
        self.policy, self.config, self.seen = policy, policy.config, set()

    def select_action(self, *args, **kwargs):
        self.seen.add((tuple(blas_threads()), torch.get_num_threads()))
        return self.policy.select_action(*args, **kwargs)


def test_the_evaluation_runs_with_the_threads_asked_and_restores_the_pools_after(policy):
    torch.set_num_threads(3)
    before = blas_threads()
    try:
        recording = RecordingPolicy(policy)
        evaluate(policy=recording, num_concepts=C, students=5, interactions=3, seed=3, threads=2)
        assert recording.seen == {(tuple(2 for _ in before), 2)}
        recording.seen.clear()
        evaluate(policy=recording, num_concepts=C, students=5, interactions=3, seed=3)  # the default: one thread
        assert recording.seen == {(tuple(1 for _ in before), 1)}
        assert blas_threads() == before and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(threads):
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        with limited_threads(threads):
            pass
