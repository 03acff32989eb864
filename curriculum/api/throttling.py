"""Per-token request budget for the API (`API_THROTTLE_RATE`, e.g. "60000/min"), counted in the shared cache.

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

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        base = self.get_cache_key(request, view)
        position = self.timer() / self.duration
        window = math.floor(position)
        elapsed = position - window  # fraction of this window gone
        this_key, last_key = f"{base}:{window}", f"{base}:{window - 1}"
        now = _monotonic()
        backend = _Fallback.counts if _Fallback.active(now) else caches[DEFAULT_CACHE_ALIAS]
        try:
            this, last = self._count(backend, this_key, last_key)  # `this` includes the request being decided
        except Exception as exc:  # noqa: BLE001 - any cache failure (redis-py's, a backend's own) fails over
            if backend is _Fallback.counts:
                raise
            _Fallback.start(now, exc)
            backend = _Fallback.counts
            this, last = self._count(backend, this_key, last_key)
        if last * (1.0 - elapsed) + this <= self.num_requests:
            return True
        try:
            backend.decr(this_key)  # a refused request does not use up the budget
        except Exception as exc:  # noqa: BLE001 - the refusal stands; the count is one too high
            _Fallback.start(now, exc)
        self._wait = self._seconds_until_allowed(this=this - 1, last=last, elapsed=elapsed)
        return False

    def _count(self, backend: BaseCache, this_key: str, last_key: str) -> tuple[int, int]:
        """Count this request in this window; return (this window's count, the last window's)."""
        # two windows of life: a count is read as "the last window" during the next one
        ttl = 2 * self.duration + 1
        if isinstance(backend, RedisCache):
            # Django's RedisCache.incr costs two round trips and add another: pipeline the raw commands instead
            # (Django stores integers unpickled, so INCR works on them and they read back as ints)
            keys = [backend.make_and_validate_key(k) for k in (this_key, last_key)]
            pipe = backend._cache.get_client(keys[0], write=True).pipeline(transaction=False)
            pipe.incr(keys[0]).expire(keys[0], ttl).get(keys[1])
            this, _, last = pipe.execute()
            return int(this), int(last or 0)
        if backend.add(this_key, 1, timeout=ttl):
            this = 1
        else:
            try:
                this = backend.incr(this_key)
            except ValueError:  # expired between add and incr (only at the very end of its life)
                backend.add(this_key, 1, timeout=ttl)
                this = 1
        return this, int(backend.get(last_key) or 0)

    def _seconds_until_allowed(self, *, this: int, last: int, elapsed: float) -> float:
        room = self.num_requests - 1  # the estimate must fall to this for one more request
        if this <= room:
            # within this window, as the last window's share decays: last * (1 - e) <= room - this
            needed = 1.0 - (room - this) / last if last else elapsed
            return max(needed - elapsed, 0.0) * self.duration
        # after this window ends, when its count (then "the last window") has decayed enough
        needed = 1.0 - room / max(this, 1)
        return (1.0 - elapsed + max(needed, 0.0)) * self.duration

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
