"""Evaluation on every core (issue #22): the results do not depend on the number of worker processes, a policy
ships to the workers (DTLite pickles), the progress is counted from the workers' loops, and small work stays in this
process."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from training.rl import evaluation
from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite
from training.rl.encoder import EncoderConfig
from training.rl.evaluation import BASELINES, EXTRA_BASELINES, evaluate

C = 5
SMALL = dict(num_concepts=C, students=6, interactions=8, seed=11)


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> DTLite:
    """An untrained DTLite of C concepts (its choices vary with the states, which is all this needs)."""
    folder = tmp_path_factory.mktemp("policy")
    encoder = EncoderConfig(num_concepts=C)
    torch.manual_seed(1)
    model = DecisionTransformer(DTConfig(state_dim=encoder.state_dim, action_dim=C, hidden_dim=32, num_layers=2,
                                         num_heads=2, context_length=4, max_timestep=32, return_scale=1.0)).eval()
    export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i}" for i in range(C)],
                     encoder=encoder.to_dict(), target_return=0.5)
    return DTLite.load(folder / WEIGHTS_FILE, folder / CONFIG_FILE)


def test_a_pickled_dtlite_chooses_as_the_original(policy):
    rng = np.random.default_rng(0)
    B, T = 3, 4
    inputs = (rng.random((B, T), dtype=np.float32), rng.random((B, T, 4 * C), dtype=np.float32),
              rng.integers(C, size=(B, T)), np.tile(np.arange(T), (B, 1)))
    policy.action_logits(*inputs)  # fills the original's per-thread cache, which is not shipped
    copy = pickle.loads(pickle.dumps(policy))
    assert np.array_equal(copy.action_logits(*inputs), policy.action_logits(*inputs))
    assert np.array_equal(copy.select_action(*inputs)[0], policy.select_action(*inputs)[0])
    assert copy.config == policy.config


def test_evaluation_results_do_not_depend_on_the_number_of_worker_processes(policy, monkeypatch):
    monkeypatch.setattr(evaluation, "POOL_PART_REVIEWS", 1)  # a pool for even this small evaluation
    started = []
    real_pool = evaluation.worker_pool

    def recording_pool(workers, **kwargs):
        started.append(workers)
        return real_pool(workers, **kwargs)

    monkeypatch.setattr(evaluation, "worker_pool", recording_pool)
    kwargs = dict(policy=policy, families="builtin,actr,hlr", **SMALL)
    one = evaluate(processes=1, **kwargs)
    assert started == []
    two = evaluate(processes=2, **kwargs)
    assert started == [2]
    assert two == one  # every mean, interval, paired difference and gap, exactly, and in the same key order
    assert list(two["families"]["actr"]) == list(one["families"]["actr"])
    assert one["results"]["dt"]["mean"] > 0


def test_the_progress_counts_every_loop_once_when_workers_run_them(policy, monkeypatch):
    monkeypatch.setattr(evaluation, "POOL_PART_REVIEWS", 1)
    seen = []
    evaluate(policy=policy, processes=2, on_progress=lambda done, total, name: seen.append((done, total, name)),
             **SMALL)
    runs = 1 + len(BASELINES) + len(EXTRA_BASELINES)
    assert [done for done, _, _ in seen] == list(range(1, runs + 1))
    assert {total for _, total, _ in seen} == {runs}
    assert sorted(name for _, _, name in seen) == sorted(["dt", *BASELINES, *EXTRA_BASELINES])


def test_an_evaluation_too_small_to_pay_for_a_pool_stays_in_this_process(policy, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(evaluation, "worker_pool", refuse)
    assert evaluate(policy=policy, processes=8, **SMALL)["results"]["dt"]["mean"] > 0


def test_a_daemonic_caller_evaluates_in_this_process(policy, monkeypatch):
    class PreforkChild:  # what multiprocessing.current_process() is in a Celery prefork worker's child
        daemon = True

    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(evaluation, "POOL_PART_REVIEWS", 1)
    monkeypatch.setattr(evaluation, "worker_pool", refuse)
    monkeypatch.setattr("training.rl.cpu_threads.multiprocessing.current_process", lambda: PreforkChild())
    assert evaluate(policy=policy, processes=4, **SMALL)["results"]["dt"]["mean"] > 0


@pytest.mark.parametrize("processes", [0, -2, 1.5, True, "4", None])
def test_evaluate_refuses_a_number_of_processes_that_is_neither_auto_nor_a_positive_integer(processes):
    with pytest.raises(ValueError, match="processes"):
        evaluate(processes=processes, **SMALL)
