"""Load shedding for the API's heavy requests: at most ``API_BATCH_CONCURRENCY`` batch recommendation requests run
at once in a web process; one more is refused at once with a 503 and ``Retry-After`` instead of taking a server
thread that the app's reviews need. Measured before it existed (bench/README.md, `api_load.py --batch 1000
--concurrency 4` on gunicorn -w 2 --threads 2): four batch connections held all four threads and the review posts
fell to 5.2 of the 20 batches/s asked, their median latency 15 s.

Counted per process (gunicorn's workers are processes; its threads share one count), under a lock. By default a
refused request waits for nothing. ``API_BATCH_QUEUE`` (default 0) lets that many more wait, each at most
``API_BATCH_QUEUE_MS``, for a slot of their own process to free, instead of being told to come back in a second:
the kernel hands each connection to whichever process accepts it, so without a queue a batch is often refused by a
busy process while the other idles (measured in bench/README.md, "api_load.py"). A waiting request holds a server
thread: give the process threads for its running and waiting batches plus those the reviews need (for example
gunicorn ``--threads 4`` with API_BATCH_CONCURRENCY 1 and API_BATCH_QUEUE 1 leaves two threads to the reviews)."""
from __future__ import annotations

import threading
import time

from django.conf import settings


class ConcurrencyLimit:
    """At most ``limit()`` holders at once, and at most ``queue()`` more waiting for a slot, each for at most
    ``queue_wait_s()`` (all three read from settings on each try, so that a changed setting, in tests, takes effect
    at once). ``try_acquire`` never blocks; ``acquire`` may wait: each True (hold a slot; `release` it) or False."""

    def __init__(self, setting: str, *, queue_setting: str | None = None, queue_wait_setting: str | None = None) -> None:
        self.setting = setting
        self.queue_setting, self.queue_wait_setting = queue_setting, queue_wait_setting
        self._freed = threading.Condition(threading.Lock())
        self._held = 0
        self._waiting = 0

    def limit(self) -> int:
        return max(int(getattr(settings, self.setting)), 1)

    def queue(self) -> int:
        """How many may wait for a slot at once (0 without a queue setting)."""
        return max(int(getattr(settings, self.queue_setting)), 0) if self.queue_setting else 0

    def queue_wait_s(self) -> float:
        """Seconds a waiting request waits at most (0 without a queue setting; the setting is in milliseconds)."""
        return max(int(getattr(settings, self.queue_wait_setting)), 0) / 1000 if self.queue_wait_setting else 0.0

    def try_acquire(self) -> bool:
        with self._freed:
            if self._held >= self.limit():
                return False
            self._held += 1
            return True

    def acquire(self) -> bool:
        """A slot at once if one is free; else, when fewer than ``queue()`` are already waiting, wait for one at most
        ``queue_wait_s()`` seconds (woken by ``release``); False when the queue is full or the wait ran out."""
        with self._freed:
            if self._held < self.limit():
                self._held += 1
                return True
            wait_s = self.queue_wait_s()
            if self._waiting >= self.queue() or wait_s <= 0:
                return False
            self._waiting += 1
            try:
                deadline = time.monotonic() + wait_s
                while self._held >= self.limit():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._freed.wait(left)
                self._held += 1
                return True
            finally:
                self._waiting -= 1

    def release(self) -> None:
        with self._freed:
            if self._held <= 0:
                raise RuntimeError(f"{self.setting}: released more slots than were held")
            self._held -= 1
            self._freed.notify()

    @property
    def held(self) -> int:
        with self._freed:
            return self._held

    @property
    def waiting(self) -> int:
        with self._freed:
            return self._waiting


batch_requests = ConcurrencyLimit("API_BATCH_CONCURRENCY", queue_setting="API_BATCH_QUEUE",
                                  queue_wait_setting="API_BATCH_QUEUE_MS")
