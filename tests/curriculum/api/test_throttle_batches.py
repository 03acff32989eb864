"""The throttle counts in each process and adds to the shared cache in batches, and still limits across processes:
two processes are two `_Batches` (each process's own counts) over one shared cache."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.cache import cache

from curriculum.api import throttling
from curriculum.api.throttling import FLUSH_FRACTION, FLUSH_SECONDS, TokenRateThrottle, _Batches

RATE = 1000  # per minute: batches of up to FLUSH_FRACTION * RATE = 10 units
WINDOW_START = 60.0 * 29_000_000  # a whole minute, in time.time() seconds


@pytest.fixture
def clock(settings, monkeypatch):
    """[wall seconds, monotonic seconds], read by the throttle's window and its flush timer."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": f"{RATE}/min"}}
    cache.clear()
    throttling._Fallback.reset()
    now = [WINDOW_START + 1.0, 100.0]
    monkeypatch.setattr(throttling, "_monotonic", lambda: now[1])
    yield now
    cache.clear()


REQUEST = SimpleNamespace(user=SimpleNamespace(pk=1, is_authenticated=True))


def asks(process: _Batches, clock, *, cost: int = 1) -> bool:
    """One request of token 1 decided by `process`."""
    throttle = TokenRateThrottle()
    throttle.batches = process
    throttle.timer = lambda: clock[0]
    view = SimpleNamespace(throttle_cost=lambda request: cost)
    return throttle.allow_request(REQUEST, view)


def shared_count(window_start: float = WINDOW_START) -> int:
    return int(cache.get(f"throttle:user:1:{int(window_start // 60)}") or 0)


def test_two_processes_together_grant_the_rate_within_their_batches(clock):
    first, second = _Batches(), _Batches()
    granted = 0
    for i in range(3 * RATE):
        clock[0] += 0.01  # 30 s of requests, in one window
        clock[1] += 0.01
        granted += asks(first if i % 2 else second, clock)
    slack = 2 * FLUSH_FRACTION * RATE  # what the other process may hold pending, each
    assert RATE - slack <= granted <= RATE + slack
    assert not asks(first, clock) and not asks(second, clock)


def test_counts_reach_the_shared_cache_in_batches(clock):
    process = _Batches()
    assert asks(process, clock)  # the first request reads the shared counts (and adds itself)
    assert shared_count() == 1
    for _ in range(5):
        assert asks(process, clock)
    assert shared_count() == 1  # pending in the process: no round trip per request
    clock[1] += FLUSH_SECONDS
    assert asks(process, clock)
    assert shared_count() == 7  # the pending five and this one, in one round trip


def test_a_full_batch_is_added_before_its_time(clock):
    process = _Batches()
    for _ in range(int(FLUSH_FRACTION * RATE) + 1):
        assert asks(process, clock)
    assert shared_count() == int(FLUSH_FRACTION * RATE) + 1


def test_a_process_sees_what_the_other_counted_at_its_next_round_trip(clock):
    first, second = _Batches(), _Batches()
    assert asks(first, clock, cost=RATE - 5)  # larger than a batch: added at once
    assert asks(second, clock, cost=5)  # reads the shared count: exactly the rest of the budget
    assert not asks(second, clock)
    clock[1] += FLUSH_SECONDS
    assert not asks(first, clock)  # its round trip sees the other's five


def test_counts_pending_when_the_window_ends_go_to_that_window(clock):
    process = _Batches()
    for _ in range(4):
        assert asks(process, clock)  # one added, three pending
    clock[0] = WINDOW_START + 61.0  # the next window
    assert asks(process, clock)
    assert shared_count() == 4 and shared_count(WINDOW_START + 60) == 1


def test_a_refused_request_is_not_counted(clock):
    process = _Batches()
    assert asks(process, clock, cost=RATE)
    assert not asks(process, clock)
    clock[1] += FLUSH_SECONDS
    assert not asks(process, clock)  # refused after a round trip: given back
    assert shared_count() == RATE


def refused_before_queueing(process: _Batches, clock, *, cost: int = 1, on_cost=None) -> tuple[bool, float | None]:
    """(refused_locally, wait()) for one request of token 1 decided by `process`'s counts."""
    throttle = TokenRateThrottle()
    throttle.batches = process
    throttle.timer = lambda: clock[0]

    def throttle_cost(request):
        if on_cost is not None:
            on_cost()
        return cost

    refused = throttle.refused_locally(REQUEST, SimpleNamespace(throttle_cost=throttle_cost))
    return refused, throttle.wait() if refused else None


def test_the_local_refusal_reads_the_cost_outside_the_tokens_lock(clock):
    """A batch view's cost parses its body: another request of the same token must not wait on that."""
    process = _Batches()
    assert asks(process, clock)
    held = []
    refused_before_queueing(process, clock, on_cost=lambda: held.append(process.of("throttle:user:1").lock.locked()))
    assert held == [False]


def test_a_small_request_over_the_local_counts_is_refused_with_its_wait(clock):
    process = _Batches()
    assert asks(process, clock, cost=RATE)  # the whole budget, read back from the cache
    refused, wait = refused_before_queueing(process, clock, cost=1)
    assert refused and wait is not None and wait > 0


def test_a_large_request_is_refused_locally_only_when_not_one_unit_fits(clock):
    """As allow_request, the local counts (up to FLUSH_SECONDS old) decide only small requests: a batch larger than
    FLUSH_FRACTION of the budget that the counts cannot hold whole goes on to the shared cache's decision, unless
    the counts leave no room at all (then refused, its Retry-After for its whole cost)."""
    process = _Batches()
    assert asks(process, clock, cost=RATE - 50)
    assert refused_before_queueing(process, clock, cost=100) == (False, None)  # 50 left: the cache decides
    assert not asks(process, clock, cost=100)  # and it refuses
    assert asks(process, clock, cost=50)
    refused, wait = refused_before_queueing(process, clock, cost=100)
    assert refused
    one_unit = refused_before_queueing(process, clock, cost=1)[1]
    assert wait > one_unit  # the whole batch's wait, not the probed unit's


def test_no_local_refusal_while_the_cache_is_failed_over(clock):
    process = _Batches()
    assert asks(process, clock, cost=RATE)
    throttling._Fallback.start(clock[1], RuntimeError("cache down"))
    try:
        assert refused_before_queueing(process, clock, cost=1) == (False, None)
    finally:
        throttling._Fallback.reset()
