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
gunicorn ``--threads 4`` with API_BATCH_CONCURRENCY 1 and API_BATCH_QUEUE 1 leaves two threads to the reviews).
Waiters are served in arrival order (a freed slot is handed to the longest waiter)."""
from __future__ import annotations

import collections
import threading
import time

from django.conf import settings


class ConcurrencyLimit:
    """At most ``limit()`` holders at once, and at most ``queue()`` more waiting for a slot, each for at most
    ``queue_wait_s()`` (all three read from settings on each try, so that a changed setting, in tests, takes effect
    at once). ``try_acquire`` never blocks; ``acquire`` may wait: each True (hold a slot; `release` it) or False.

    Waiters are served first come, first served: a released slot is handed to the longest waiter (it stays held),
    so that a request arriving as it frees cannot take it from one that has waited. A slot a raised limit adds is
    noticed by the first waiter within POLL_S."""

    POLL_S = 0.05

    def __init__(self, setting: str, *, queue_setting: str | None = None, queue_wait_setting: str | None = None) -> None:
        self.setting = setting
        self.queue_setting, self.queue_wait_setting = queue_setting, queue_wait_setting
        self._changed = threading.Condition(threading.Lock())
        self._held = 0
        self._waiters: collections.deque[list[bool]] = collections.deque()  # [granted] per waiter, in arrival order

    def limit(self) -> int:
        return max(int(getattr(settings, self.setting)), 1)

    def queue(self) -> int:
        """How many may wait for a slot at once (0 without a queue setting)."""
        return max(int(getattr(settings, self.queue_setting)), 0) if self.queue_setting else 0

    def queue_wait_s(self) -> float:
        """Seconds a waiting request waits at most (0 without a queue setting; the setting is in milliseconds)."""
        return max(int(getattr(settings, self.queue_wait_setting)), 0) / 1000 if self.queue_wait_setting else 0.0

    def try_acquire(self) -> bool:
        """A free slot at once (none while others wait for one), else False."""
        with self._changed:
            return self._take_free()

    def _take_free(self) -> bool:
        """Take a slot if one is free and nobody waits for one (the caller holds the lock)."""
        if self._held >= self.limit() or self._waiters:
            return False
        self._held += 1
        return True

    def acquire(self) -> bool:
        """A slot at once if one is free and nobody waits; else, when fewer than ``queue()`` are already waiting,
        wait for one at most ``queue_wait_s()`` seconds (handed over by ``release``, first come first served);
        False when the queue is full or the wait ran out (the slot not taken)."""
        with self._changed:
            if self._take_free():
                return True
            wait_s = self.queue_wait_s()
            if len(self._waiters) >= self.queue() or wait_s <= 0:
                return False
            ticket = [False]
            self._waiters.append(ticket)
            deadline = time.monotonic() + wait_s
            try:
                while not ticket[0]:
                    if self._waiters[0] is ticket and self._held < self.limit():  # a slot a raised limit added
                        self._waiters.popleft()
                        self._held += 1
                        ticket[0] = True
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(min(left, self.POLL_S))
                return True
            finally:
                if not ticket[0]:
                    self._waiters.remove(ticket)

    def release(self) -> None:
        """Give a slot back: to the longest waiter if any (it stays held), else free."""
        with self._changed:
            if self._held <= 0:
                raise RuntimeError(f"{self.setting}: released more slots than were held")
            if self._waiters and self._held <= self.limit():
                self._waiters.popleft()[0] = True
                self._changed.notify_all()
            else:
                self._held -= 1

    @property
    def held(self) -> int:
        with self._changed:
            return self._held

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiters)


batch_requests = ConcurrencyLimit("API_BATCH_CONCURRENCY", queue_setting="API_BATCH_QUEUE",
                                  queue_wait_setting="API_BATCH_QUEUE_MS")
