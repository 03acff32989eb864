"""PyTorch threads per Celery worker process: the cores shared out between the pool's processes."""
import os
import sys

import pytest

from crlsite.worker_threads import apply_torch_threads, torch_threads_per_process
from training.rl.cpu_threads import available_cores


@pytest.mark.parametrize(("cores", "concurrency", "override", "threads"), [
    (2, 2, None, 1),    # make run's worker on the 2-core machine: one thread per process, not two each
    (2, 1, None, 2),
    (16, 4, None, 4),
    (16, 3, None, 5),   # rounded down: never more threads than cores
    (2, 8, None, 1),    # more processes than cores: still one each
    (16, 4, 2, 2),      # CRL_WORKER_TORCH_THREADS wins
])
def test_each_process_gets_its_share_of_the_cores(cores, concurrency, override, threads):
    assert torch_threads_per_process(cores=cores, concurrency=concurrency, override=override) == threads


def test_nonsense_counts_are_refused_naming_them():
    with pytest.raises(ValueError, match="concurrency=0"):
        torch_threads_per_process(cores=2, concurrency=0)


def test_available_cores_is_this_process_affinity():
    assert available_cores() == len(os.sched_getaffinity(0))


def test_apply_sets_the_env_and_an_imported_torch(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    before = torch.get_num_threads()
    try:
        apply_torch_threads(threads=1)
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
        assert "torch" in sys.modules
    finally:
        torch.set_num_threads(before)
