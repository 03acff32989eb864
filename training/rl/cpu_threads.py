"""Thread and process pools sized for CPU-bound NumPy work (the closed-loop evaluation, synthetic generation): BLAS and
OpenMP (threadpoolctl) and, when the process has loaded it, PyTorch's intra-op pool, so that none of them
oversubscribes the cores; and worker processes, one per core, each with one such thread.

Why one thread by default: the evaluation's matrix products are small (DTLite on [students, 3 x context, hidden]
blocks), so a BLAS pool of one thread per core costs more in hand-offs than it gains, and on a many-core machine a
pool per library (OpenBLAS, PyTorch's OpenMP still sized for training) fights over the cores: issue #22 measured the
default evaluation at 56 s on 16 cores against 30 s on 2. Parallelism belongs one level up (one process per
population or policy, each with one thread).
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Literal, TypeVar

from threadpoolctl import threadpool_limits

EVALUATION_THREADS = 1  # BLAS / OpenMP / PyTorch threads of one evaluating process
AUTO = "auto"  # a number of processes: one per available core

T = TypeVar("T")


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Within the block, BLAS and OpenMP pools (threadpoolctl.threadpool_limits) and PyTorch's intra-op pool (only
    when torch is already imported: this never imports it) use ``threads`` threads; the previous sizes come back
    after. ValueError when threads is not a positive integer."""
    check_threads(threads)
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
    """Decorate ``function`` so that it runs under ``limited_threads(min(threads, available_cores()))``, ``threads``
    being a keyword argument the wrapper takes (default EVALUATION_THREADS) and does not pass on: whatever the caller
    set before (a trainer's ``torch.set_num_threads(16)``, OMP_NUM_THREADS) or asks, the function never runs with
    more threads than the cores it may use, and the caller's pool sizes come back when it returns or raises.
    ValueError (``check_threads``) when ``threads`` is not a positive integer."""

    @functools.wraps(function)
    def wrapper(*args, threads: int = EVALUATION_THREADS, **kwargs) -> T:
        with limited_threads(capped_threads(threads)):
            return function(*args, **kwargs)

    return wrapper


def capped_threads(threads: int) -> int:
    """``threads`` capped at ``available_cores()``: more pool threads than cores only wait for one at each small
    product (issue #22 measured 16 threads on 2 cores 43x slower than 2). ValueError (``check_threads``) when
    ``threads`` is not a positive integer."""
    check_threads(threads)
    return min(threads, available_cores())


def check_threads(threads: object) -> None:
    """ValueError "threads: expected a positive integer, got VALUE" unless ``threads`` is a positive integer (not a
    boolean)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, ``os.sched_getaffinity``, which containers and taskset
    narrow; ``os.cpu_count`` where the platform has no affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def can_start_processes() -> bool:
    """Whether this process may start worker processes: not when it is daemonic (a Celery prefork worker's child,
    a ``multiprocessing`` pool's worker), whose children Python refuses ("daemonic processes are not allowed to
    have children")."""
    return not multiprocessing.current_process().daemon


def pool_size(processes: int | Literal["auto"], *, parts: int) -> int:
    """How many worker processes to start for ``parts`` independent pieces of work worth a process each (the caller
    counts only pieces that pay for a process's start, ~0.3-1 s): ``processes`` (``AUTO``: ``available_cores()``)
    capped at ``parts``; 1, meaning "work in this process", when that is 1 or less or when this process may not
    start processes (``can_start_processes``). ValueError when ``processes`` is neither AUTO nor a positive
    integer."""
    check_processes(processes)
    if processes == AUTO:
        processes = available_cores()
    size = max(1, min(processes, parts))
    return size if size > 1 and can_start_processes() else 1


def check_processes(processes: object) -> None:
    """ValueError "processes: expected a positive integer or 'auto', got VALUE" unless ``processes`` is ``AUTO`` or a
    positive integer (not a boolean)."""
    if processes != AUTO and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ValueError(f"processes: expected a positive integer or {AUTO!r}, got {processes!r}")


def one_thread() -> None:
    """Make this (worker) process use one BLAS / OpenMP / PyTorch thread for the rest of its life: the pools already
    loaded (threadpoolctl), PyTorch's when it is imported, and, through OMP_NUM_THREADS / MKL_NUM_THREADS /
    OPENBLAS_NUM_THREADS, libraries loaded later. ``worker_pool``'s initializer."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    threadpool_limits(limits=1)  # not as a context: the limit stays until the process ends
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def worker_pool(workers: int, *, preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """A ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes started by the ``forkserver`` context
    (not ``fork``: a forked copy of a process that holds threads, a BLAS pool or torch's, may deadlock), each with
    one thread (``one_thread``). ``preload``: modules the fork server imports once, so that each worker forks from
    it ready instead of importing NumPy and the learning core again (no effect once this process's fork server
    runs). Use it as a context manager, which waits for the workers and stops them."""
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=one_thread)
