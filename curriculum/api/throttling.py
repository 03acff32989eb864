"""Per-token request budget for the API (`API_THROTTLE_RATE`, e.g. "60000/min"), counted in the shared cache.

A request costs one unit of the budget, a batch of recommendations one per learner (the view's `throttle_cost`).

Each process counts its requests locally and adds them to the shared count in batches (`_Batches`): at most every
`FLUSH_SECONDS`, or once `FLUSH_FRACTION` of the budget is pending, one round trip adds them and reads what every
process counted. Between round trips a request is decided on the shared count last read plus this process's
pending ones, so a process never grants more than it could after a round trip, and all processes together exceed
the rate by less than `FLUSH_FRACTION` of it each (the requests counted by the others since their last round trip).
A budget too small to batch (fewer than 1 / `FLUSH_FRACTION` units) is counted request by request, exactly.

When the shared cache fails (down, refusing, or slower than its client timeout), the budget is counted in the
process instead for `FALLBACK_SECONDS`, with one logged warning: a cache outage costs a few requests one client
timeout each, never an API outage. Meanwhile each process grants the full rate on its own (fail open).
"""
from __future__ import annotations

import logging
import math
import threading
import time

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

# Seconds the throttle counts in the process after the shared cache failed, before trying it again.
FALLBACK_SECONDS = 5.0
# The longest a process keeps counted requests before adding them to the shared cache, and the share of the budget
# it may keep pending (the most all processes together can overshoot the rate, each).
FLUSH_SECONDS = 0.25
FLUSH_FRACTION = 0.01
# The WSGI environ key by which the lean path (curriculum/api/lean_path.py) marks a request it has counted already,
# before handing it to Django (an error it lets Django answer): REST framework's check then counts it no second time.
# No client can send it: a header reaches the environ as HTTP_*.
THROTTLE_COUNTED = "crl.throttle_counted"


class _Batch:
    """One token's counts in one process: the shared counts last read (`this`: this window's, `last`: the last
    window's), and the units granted here since (`pending`), for window `window`."""

    __slots__ = ("lock", "window", "this", "last", "pending", "synced_at")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window: int | None = None
        self.this = self.last = self.pending = 0
        self.synced_at = -math.inf


class _Batches:
    """The per-token batches of one process (a test may hold two, as two processes would)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._by_key: dict[str, _Batch] = {}

    def of(self, key: str) -> _Batch:
        batch = self._by_key.get(key)
        if batch is None:
            with self._guard:
                batch = self._by_key.setdefault(key, _Batch())
        return batch

    def clear(self) -> None:
        with self._guard:
            self._by_key.clear()


class _Fallback:
    """Process-wide: until when the shared cache is bypassed, and the local counts used meanwhile."""

    lock = threading.Lock()
    until = 0.0  # time.monotonic() seconds
    counts = LocMemCache("crl-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})

    @classmethod
    def active(cls, now: float) -> bool:
        return now < cls.until

    @classmethod
    def start(cls, now: float, error: Exception) -> None:
        with cls.lock:
            if now < cls.until:
                return  # another thread already reported this outage
            cls.until = now + FALLBACK_SECONDS
        logger.warning(
            "throttle: the shared cache failed (%s: %s); counting requests in this process for %.0f s",
            type(error).__name__, error, FALLBACK_SECONDS,
        )

    @classmethod
    def reset(cls) -> None:
        """Forget an outage and the local counts (tests, or an operator's shell after fixing the cache)."""
        with cls.lock:
            cls.until = 0.0
            cls.counts.clear()


def _monotonic() -> float:
    # a seam: tests move the outage clock without sleeping
    return time.monotonic()


class TokenRateThrottle(SimpleRateThrottle):
    """At most N requests per period per token (a token is one user), over a sliding window.

    DRF's UserRateThrottle keeps a list of request times per user and rewrites it on each request: at the
    default 60000/min that is a list of tens of thousands of floats through the cache per request, and
    processes racing on it lose updates. This keeps two integers per token instead (this window's count and
    the last one's) and estimates the sliding window as ``last * (1 - elapsed) + this``: O(1), an atomic
    increment, one round trip on Redis. The rate is parsed by DRF (`parse_rate`: "60000/min" is 60000 per 60 s).
    """

    scope = "user"

    def get_rate(self) -> str | None:
        # read per request, not at import as SimpleRateThrottle does, so a changed setting applies at once
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        user = getattr(request, "user", None)
        ident = user.pk if user is not None and user.is_authenticated else self.get_ident(request)
        return f"throttle:{self.scope}:{ident}"

    batches = _Batches()  # one per process

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        meta = getattr(request, "META", None)
        if meta is not None and meta.get(THROTTLE_COUNTED):  # counted by the lean path already
            return True
        base = self.get_cache_key(request, view)
        cost = self._cost(request, view)
        window, elapsed = self._window()
        now = _monotonic()
        if _Fallback.active(now):
            return self._decide(_Fallback.counts, base, window, elapsed, cost, now)
        batch = self.batches.of(base)
        with batch.lock:
            if batch.pending + cost < self.num_requests * FLUSH_FRACTION:
                allowed = self._decide_locally(batch, window, elapsed, cost, now)
                if allowed is not None:
                    if allowed:
                        batch.pending += cost
                    return allowed
            return self._sync(batch, base, window, elapsed, cost, now)

    def _decide_locally(self, batch: _Batch, window: int, elapsed: float, cost: int, now: float) -> bool | None:
        """Whether ``cost`` more units fit by this process's counts alone (the shared counts last read plus the units
        it granted since; ``wait()`` set when not), counting nothing; None when those counts are stale (another
        window, or read FLUSH_SECONDS ago or more): only the shared cache can tell then. Under batch.lock."""
        if batch.window != window or now - batch.synced_at >= FLUSH_SECONDS:
            return None
        this = batch.this + batch.pending + cost
        if batch.last * (1.0 - elapsed) + this <= self.num_requests:
            return True
        self._wait = self._seconds_until_allowed(this=this - cost, last=batch.last, elapsed=elapsed, cost=cost)
        return False

    def _cost(self, request, view) -> int:
        """Units of the budget this request uses (the view's ``throttle_cost``, default 1); a batch larger than the
        whole budget takes all of it (it would otherwise never pass)."""
        cost = max(int(view.throttle_cost(request)), 1) if hasattr(view, "throttle_cost") else 1
        return min(cost, self.num_requests)

    def _window(self) -> tuple[int, float]:
        """(the current window's number, the fraction of it gone)."""
        position = self.timer() / self.duration
        window = math.floor(position)
        return window, position - window

    def refused_locally(self, request, view) -> bool:
        """True (and ``wait()`` set) when this process's last read of the shared counts plus what it granted since
        already leave no room for this request, without a cache round trip and without counting it: a request that
        would wait for something else first (a batch queued for a slot) is refused before it waits. As
        ``allow_request`` trusts those counts only for a request under FLUSH_FRACTION of the budget, a larger one is
        refused here only when not even one more unit fits (the counts may be up to FLUSH_SECONDS old). False when
        the local counts are stale (another window, or older than FLUSH_SECONDS), leave room, or the cache is failed
        over (``_Fallback``): ``allow_request`` decides then, as always. The request's cost (the view's
        ``throttle_cost``, which may read and parse the body) is taken before the token's lock."""
        if self.rate is None:
            return False
        cost = self._cost(request, view)
        window, elapsed = self._window()
        now = _monotonic()
        if _Fallback.active(now):
            return False
        batch = self.batches.of(self.get_cache_key(request, view))
        with batch.lock:
            probe = cost if batch.pending + cost < self.num_requests * FLUSH_FRACTION else 1
            if self._decide_locally(batch, window, elapsed, probe, now) is not False:
                return False
            # Retry-After for the whole request (as _decide_locally's for it), not for the one unit probed
            self._wait = self._seconds_until_allowed(this=batch.this + batch.pending, last=batch.last,
                                                     elapsed=elapsed, cost=cost)
            return True

    def _sync(self, batch: _Batch, base: str, window: int, elapsed: float, cost: int, now: float) -> bool:
        """Add the pending units and this request to the shared counts, read them, decide (under batch.lock)."""
        backend = caches[DEFAULT_CACHE_ALIAS]
        pending, batch.pending = batch.pending, 0
        try:
            if pending and batch.window != window:  # counted in a window that has ended: they belong to it
                self._count(backend, f"{base}:{batch.window}", f"{base}:{batch.window - 1}", pending)
                pending = 0
            this, last = self._count(backend, f"{base}:{window}", f"{base}:{window - 1}", pending + cost)
        except Exception as exc:  # noqa: BLE001 - any cache failure (redis-py's, a backend's own) fails over
            _Fallback.start(now, exc)
            batch.window = None  # read the shared counts afresh once the cache answers again
            return self._decide(_Fallback.counts, base, window, elapsed, cost, now)
        batch.window, batch.this, batch.last, batch.synced_at = window, this, last, now
        if last * (1.0 - elapsed) + this <= self.num_requests:
            return True
        try:
            backend.decr(f"{base}:{window}", cost)  # a refused request does not use up the budget
            batch.this -= cost
        except Exception as exc:  # noqa: BLE001 - the refusal stands; the count is `cost` too high
            _Fallback.start(now, exc)
        self._wait = self._seconds_until_allowed(this=this - cost, last=last, elapsed=elapsed, cost=cost)
        return False

    def _decide(self, backend: BaseCache, base: str, window: int, elapsed: float, cost: int, now: float) -> bool:
        """Count and decide request by request in `backend` (the process's own counts during a cache outage)."""
        this_key = f"{base}:{window}"
        this, last = self._count(backend, this_key, f"{base}:{window - 1}", cost)
        if last * (1.0 - elapsed) + this <= self.num_requests:
            return True
        backend.decr(this_key, cost)
        self._wait = self._seconds_until_allowed(this=this - cost, last=last, elapsed=elapsed, cost=cost)
        return False

    def _count(self, backend: BaseCache, this_key: str, last_key: str, cost: int = 1) -> tuple[int, int]:
        """Count this request (`cost` units) in this window; return (this window's count, the last window's)."""
        # two windows of life: a count is read as "the last window" during the next one
        ttl = 2 * self.duration + 1
        if isinstance(backend, RedisCache):
            # Django's RedisCache.incr costs two round trips and add another: pipeline the raw commands instead
            # (Django stores integers unpickled, so INCR works on them and they read back as ints)
            keys = [backend.make_and_validate_key(k) for k in (this_key, last_key)]
            pipe = backend._cache.get_client(keys[0], write=True).pipeline(transaction=False)
            pipe.incr(keys[0], cost).expire(keys[0], ttl).get(keys[1])
            this, _, last = pipe.execute()
            return int(this), int(last or 0)
        if backend.add(this_key, cost, timeout=ttl):
            this = cost
        else:
            try:
                this = backend.incr(this_key, cost)
            except ValueError:  # expired between add and incr (only at the very end of its life)
                backend.add(this_key, cost, timeout=ttl)
                this = cost
        return this, int(backend.get(last_key) or 0)

    def _seconds_until_allowed(self, *, this: int, last: int, elapsed: float, cost: int = 1) -> float:
        room = self.num_requests - cost  # the estimate must fall to this for `cost` more units
        if this <= room:
            # within this window, as the last window's share decays: last * (1 - e) <= room - this
            needed = 1.0 - (room - this) / last if last else elapsed
            return max(needed - elapsed, 0.0) * self.duration
        # after this window ends, when its count (then "the last window") has decayed enough
        needed = 1.0 - max(room, 0) / max(this, 1)
        return (1.0 - elapsed + max(needed, 0.0)) * self.duration

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
