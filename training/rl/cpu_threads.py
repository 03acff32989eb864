"""Thread pools sized for CPU-bound NumPy work such as the closed-loop evaluation: BLAS and OpenMP (threadpoolctl)
and, when the process has loaded it, PyTorch's intra-op pool, so that none of them oversubscribes the cores.

Why one thread by default: the evaluation's matrix products are small (DTLite on [students, 3 x context, hidden]
blocks), so a BLAS pool of one thread per core costs more in hand-offs than it gains, and on a many-core machine a
pool per library (OpenBLAS, PyTorch's OpenMP still sized for training) fights over the cores: issue #22 measured the
default evaluation at 56 s on 16 cores against 30 s on 2. Parallelism belongs one level up (one process per
population or policy, each with one thread).
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from threadpoolctl import threadpool_limits

EVALUATION_THREADS = 1  # BLAS / OpenMP / PyTorch threads of one evaluating process

T = TypeVar("T")


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Within the block, BLAS and OpenMP pools (threadpoolctl.threadpool_limits) and PyTorch's intra-op pool (only
    when torch is already imported: this never imports it) use ``threads`` threads; the previous sizes come back
    after. ValueError when threads is not a positive integer."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=threads):
        if torch is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def sized_threads(function: Callable[..., T]) -> Callable[..., T]:
    """Decorate ``function`` so that it runs under ``limited_threads(threads)``, ``threads`` being a keyword argument
    the wrapper takes (default EVALUATION_THREADS) and does not pass on."""

    @functools.wraps(function)
    def wrapper(*args, threads: int = EVALUATION_THREADS, **kwargs) -> T:
        with limited_threads(threads):
            return function(*args, **kwargs)

    return wrapper
