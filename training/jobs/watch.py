"""A worker's watch over the jobs, so that neither a dead worker nor a lost message waits on Celery beat: a thread in
each worker's main process runs, every CRL_JOB_WATCH_SECONDS, the stale-heartbeat check (``mark_stale_jobs``) and
the re-publishing of jobs whose message was lost (``publishing.requeue_queued_jobs``). Both are conditional updates
or idempotent publishes, so several workers watching at once do no harm. A failing round (the database or the broker
away) is logged when the failures begin and when they end, not every round.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connections

from .lifecycle import mark_stale_jobs
from .publishing import requeue_queued_jobs

log = logging.getLogger(__name__)


def watch_seconds() -> float:
    return float(getattr(settings, "CRL_JOB_WATCH_SECONDS", 10.0))


class JobWatch:
    """The watch thread (a daemon: it ends with the worker). ``start`` once per worker; ``stop`` for tests."""

    def __init__(self, *, every: float | None = None):
        self.every = watch_seconds() if every is None else every
        self.rounds = 0
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-watch", daemon=True)

    def start(self) -> JobWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def check(self) -> tuple[int, int]:
        """One round: (jobs marked failed as stale, jobs published again)."""
        try:
            result = mark_stale_jobs(), requeue_queued_jobs()
        except Exception:  # noqa: BLE001 - the watch outlives an outage; the next round tries again
            if not self._failing:
                log.exception("job watch: a round failed; retrying every %.0f s (logged again when it recovers)",
                              self.every)
            self._failing = True
            return 0, 0
        finally:
            connections.close_all()  # this thread's connections: nothing held between rounds
            self.rounds += 1
        if self._failing:
            log.warning("job watch: rounds succeed again")
            self._failing = False
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.check()
