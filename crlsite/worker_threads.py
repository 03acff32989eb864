"""How many PyTorch (OpenMP) threads a Celery worker process uses: its share of the cores, not all of them.

Two worker processes each using every core of a 2-core machine made a training step 5-14x slower than one
thread each (the threads of both processes spin against each other)."""
from __future__ import annotations

import os
import sys


def torch_threads_per_process(*, cores: int, concurrency: int, override: int | None = None) -> int:
    """Threads for each of ``concurrency`` worker processes sharing ``cores`` cores: ``cores // concurrency``,
    at least 1; ``override`` (CRL_WORKER_TORCH_THREADS) wins when it is a positive int.

    Raises ``ValueError`` for ``cores`` or ``concurrency`` below 1.
    """
    if cores < 1 or concurrency < 1:
        raise ValueError(f"cores and concurrency must be >= 1, got cores={cores}, concurrency={concurrency}")
    if override:
        return override
    return max(1, cores // concurrency)


def apply_torch_threads(*, threads: int) -> None:
    """Make this process's PyTorch use ``threads`` intra-op threads, whether or not torch is imported yet.

    Sets OMP_NUM_THREADS / MKL_NUM_THREADS (read when torch is first imported) and, when torch is already
    imported, ``torch.set_num_threads``. Importing torch is avoided: most tasks never need it.
    """
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
