"""The evaluation's thread pools: sized as asked while it runs, restored after, and its results the same for any
number of threads; worker pools: one per core, none in a daemonic process, one thread in each worker."""
import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
from training.rl.checkpoint import export_artifacts
from training.rl import cpu_threads
from training.rl.cpu_threads import AUTO, can_start_processes, limited_threads, one_thread, pool_size, worker_pool
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


def test_the_evaluation_never_runs_with_more_threads_than_cores_and_gives_the_same_results(policy, monkeypatch):
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 2)
    recording = RecordingPolicy(policy)
    asked_16 = evaluate(policy=recording, num_concepts=C, students=5, interactions=3, seed=3, threads=16, processes=1)
    assert {torch_threads for _, torch_threads in recording.seen} == {2}
    assert all(set(blas) <= {2} for blas, _ in recording.seen)
    assert asked_16 == evaluate(policy=policy, num_concepts=C, students=5, interactions=3, seed=3, processes=1)


def test_a_caller_with_16_threads_such_as_a_trainer_gets_them_back_and_the_evaluation_runs_with_one(policy):
    # the trainer's TrainConfig.num_threads is a torch.set_num_threads the evaluation after it must not undo
    torch.set_num_threads(16)
    try:
        with threadpool_limits(limits=16):
            before = blas_threads()
            recording = RecordingPolicy(policy)
            evaluate(policy=recording, num_concepts=C, students=5, interactions=3, seed=3, processes=1)
            assert recording.seen == {(tuple(1 for _ in before), 1)}
            assert blas_threads() == before and torch.get_num_threads() == 16
    finally:
        torch.set_num_threads(1)


def test_the_caller_threads_come_back_when_the_evaluation_raises(policy):
    torch.set_num_threads(3)
    try:
        with pytest.raises(ValueError, match="students"):
            evaluate(policy=policy, num_concepts=C, students=0, interactions=3, seed=3, threads=1)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(threads):
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        with limited_threads(threads):
            pass
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        cpu_threads.capped_threads(threads)


def test_pool_size_is_the_cores_for_auto_capped_by_the_parts(monkeypatch):
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 16)
    assert pool_size(AUTO, parts=40) == 16
    assert pool_size(AUTO, parts=3) == 3
    assert pool_size(4, parts=40) == 4
    assert pool_size(4, parts=0) == 1  # work too small for one process: stays in this one
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 1)
    assert pool_size(AUTO, parts=40) == 1


def test_a_daemonic_process_such_as_a_prefork_worker_child_starts_no_pool(monkeypatch):
    class Daemonic:
        daemon = True

    monkeypatch.setattr(cpu_threads.multiprocessing, "current_process", lambda: Daemonic())
    assert not can_start_processes()
    assert pool_size(8, parts=8) == 1


@pytest.mark.parametrize("processes", [0, -1, 1.5, True, "2", None])
def test_pool_size_refuses_a_number_of_processes_that_is_neither_auto_nor_a_positive_integer(processes):
    with pytest.raises(ValueError, match="processes: expected a positive integer or 'auto'"):
        pool_size(processes, parts=4)


def _worker_threads() -> tuple[list[int], str]:
    return blas_threads(), os.environ["OMP_NUM_THREADS"]


def test_a_worker_pool_process_runs_with_one_thread():
    with worker_pool(1) as pool:
        threads, omp = pool.submit(_worker_threads).result(timeout=120)
    assert threads and set(threads) == {1} and omp == "1"


def test_one_thread_sets_every_pool_and_the_variables_libraries_read_later(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    torch.set_num_threads(3)
    try:
        with threadpool_limits(limits=2):  # restores this process's pools after
            assert set(blas_threads()) == {2}
            one_thread()
            assert set(blas_threads()) == {1} and torch.get_num_threads() == 1
            assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(1)


@pytest.mark.trains
def test_training_then_evaluating_in_one_process_leaves_the_trainers_threads_alone():
    from tests.training.rl.test_trainer import TINY, quick, toy_dataset
    from training.rl.trainer import train

    try:
        train(dataset=toy_dataset(), model_config=TINY, train_config=quick(num_threads=2))
        assert torch.get_num_threads() == 2
        evaluate(num_concepts=4, students=5, interactions=3, seed=3, processes=1)  # baselines only
        assert torch.get_num_threads() == 2  # what a training after it in this process runs with
    finally:
        torch.set_num_threads(1)
