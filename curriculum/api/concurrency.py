"""Load shedding for the API's heavy requests: at most ``API_BATCH_CONCURRENCY`` batch recommendation requests run
at once in a web process; one more is refused at once with a 503 and ``Retry-After`` instead of taking a server
thread that the app's reviews need. Measured before it existed (bench/README.md, `api_load.py --batch 1000
--concurrency 4` on gunicorn -w 2 --threads 2): four batch connections held all four threads and the review posts
fell to 5.2 of the 20 batches/s asked, their median latency 15 s.

Counted per process (gunicorn's workers are processes; its threads share one count), under a lock: a refused
request waits for nothing."""
from __future__ import annotations

import threading

from django.conf import settings


class ConcurrencyLimit:
    """At most ``limit()`` holders at once (the limit read from a setting on each try, so that a changed setting, in
    tests, takes effect at once). ``try_acquire`` never blocks: True (hold a slot; `release` it) or False."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self._lock = threading.Lock()
        self._held = 0

    def limit(self) -> int:
        return max(int(getattr(settings, self.setting)), 1)

    def try_acquire(self) -> bool:
        with self._lock:
            if self._held >= self.limit():
                return False
            self._held += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._held <= 0:
                raise RuntimeError(f"{self.setting}: released more slots than were held")
            self._held -= 1

    @property
    def held(self) -> int:
        with self._lock:
            return self._held


batch_requests = ConcurrencyLimit("API_BATCH_CONCURRENCY")
