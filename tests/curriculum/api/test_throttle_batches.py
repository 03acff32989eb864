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
