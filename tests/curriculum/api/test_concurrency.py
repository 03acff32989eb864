"""The batch endpoint's load shedding (curriculum/api/concurrency.py): a slot at once, a bounded queue that waits for
one (API_BATCH_QUEUE, API_BATCH_QUEUE_MS), and a refusal when the queue is full or the wait runs out."""
import json
import threading
import time

import pytest

from curriculum.api.concurrency import ConcurrencyLimit, batch_requests


@pytest.fixture
def limit(settings):
    settings.API_BATCH_CONCURRENCY, settings.API_BATCH_QUEUE, settings.API_BATCH_QUEUE_MS = 1, 1, 2000
    return ConcurrencyLimit("API_BATCH_CONCURRENCY", queue_setting="API_BATCH_QUEUE",
                            queue_wait_setting="API_BATCH_QUEUE_MS")


def acquire_in_thread(limit):
    """Start acquire() in a thread; (thread, result list [True/False once it returned, seconds it took])."""
    result = []

    def run():
        started = time.monotonic()
        result.extend([limit.acquire(), time.monotonic() - started])

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_without_a_queue_a_full_limit_refuses_at_once(limit, settings):
    settings.API_BATCH_QUEUE = 0
    assert limit.acquire()
    started = time.monotonic()
    assert not limit.acquire()
    assert time.monotonic() - started < 0.5 and limit.held == 1 and limit.waiting == 0
    limit.release()
    assert limit.acquire()  # free again
    limit.release()


def test_a_waiting_request_gets_the_slot_when_it_is_released(limit):
    assert limit.acquire()
    thread, result = acquire_in_thread(limit)
    wait_until(lambda: limit.waiting == 1)
    time.sleep(0.2)
    assert not result  # still waiting while the slot is held
    limit.release()
    thread.join(timeout=5)
    assert result[0] is True and 0.2 <= result[1] < 2.0
    assert limit.held == 1 and limit.waiting == 0
    limit.release()


def test_more_than_the_queue_are_refused_at_once(limit):
    assert limit.acquire()
    thread, result = acquire_in_thread(limit)
    wait_until(lambda: limit.waiting == 1)
    started = time.monotonic()
    assert not limit.acquire()  # the one queue place is taken
    assert time.monotonic() - started < 0.5
    limit.release()
    thread.join(timeout=5)
    assert result[0] is True
    limit.release()
    assert limit.held == 0


def test_the_wait_is_bounded(limit, settings):
    settings.API_BATCH_QUEUE_MS = 150
    assert limit.acquire()
    started = time.monotonic()
    assert not limit.acquire()
    assert 0.15 <= time.monotonic() - started < 1.5
    assert limit.held == 1 and limit.waiting == 0
    limit.release()


def test_a_zero_wait_is_no_queue(limit, settings):
    settings.API_BATCH_QUEUE_MS = 0
    assert limit.acquire()
    assert not limit.acquire() and limit.waiting == 0
    limit.release()


def test_a_release_wakes_one_waiter_per_slot(limit, settings):
    settings.API_BATCH_QUEUE = 2
    assert limit.acquire()
    waiters = [acquire_in_thread(limit) for _ in range(2)]
    wait_until(lambda: limit.waiting == 2)
    limit.release()
    wait_until(lambda: sum(bool(r) for _, r in waiters) == 1)
    assert limit.held == 1 and limit.waiting == 1
    limit.release()
    for thread, _ in waiters:
        thread.join(timeout=5)
    assert [r[0] for _, r in waiters] == [True, True]
    limit.release()
    assert limit.held == 0


def test_a_released_slot_goes_to_the_waiter_not_to_a_newcomer(limit):
    assert limit.acquire()
    thread, result = acquire_in_thread(limit)
    wait_until(lambda: limit.waiting == 1)
    limit.release()  # handed to the waiter: still held
    assert limit.held == 1 and not limit.try_acquire()
    thread.join(timeout=5)
    assert result[0] is True and limit.held == 1
    limit.release()
    assert limit.held == 0 and limit.try_acquire()
    limit.release()


def test_a_raised_limit_serves_the_first_waiter(limit, settings):
    assert limit.acquire()
    thread, result = acquire_in_thread(limit)
    wait_until(lambda: limit.waiting == 1)
    settings.API_BATCH_CONCURRENCY = 2
    thread.join(timeout=5)
    assert result[0] is True and result[1] < 1.5 and limit.held == 2 and limit.waiting == 0
    limit.release()
    limit.release()


def test_a_lowered_limit_frees_before_it_hands_over(limit, settings):
    settings.API_BATCH_CONCURRENCY = 2
    assert limit.acquire() and limit.acquire()
    thread, result = acquire_in_thread(limit)
    wait_until(lambda: limit.waiting == 1)
    settings.API_BATCH_CONCURRENCY = 1
    limit.release()  # 2 held over a limit of 1: the slot is freed, not handed over
    assert limit.held == 1 and limit.waiting == 1 and not result
    limit.release()  # now at the limit: handed to the waiter
    thread.join(timeout=5)
    assert result[0] is True and limit.held == 1 and limit.waiting == 0
    limit.release()


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def post_batch(client):
    return client.post("/api/v1/recommendations/batch", data=json.dumps({"curriculum": "demo", "learners": ["a"]}),
                       content_type="application/json")


def release_once_queued():
    """A thread that gives back the slot held by the test once a request waits in the queue."""
    def run():
        wait_until(lambda: batch_requests.waiting == 1)
        batch_requests.release()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_endpoint_waits_in_the_queue_then_answers(api_client, demo, settings):
    settings.API_BATCH_QUEUE, settings.API_BATCH_QUEUE_MS = 1, 5000
    assert batch_requests.try_acquire()  # another thread of this process is answering a batch
    releaser = release_once_queued()
    response = post_batch(api_client)
    releaser.join(timeout=5)
    assert response.status_code == 200
    assert batch_requests.held == 0 and batch_requests.waiting == 0


@pytest.fixture
def one_a_minute(settings):
    from django.core.cache import cache

    settings.API_BATCH_QUEUE, settings.API_BATCH_QUEUE_MS = 1, 5000
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "1/min"}}
    cache.clear()
    yield
    cache.clear()


def test_a_request_over_its_budget_is_refused_before_it_queues(api_client, demo, one_a_minute):
    """This process's counts already show the budget spent: 429 at once, no place in the queue taken."""
    assert post_batch(api_client).status_code == 200  # one learner: the whole budget
    assert batch_requests.try_acquire()  # another thread of this process is answering a batch
    try:
        started = time.monotonic()
        refused = post_batch(api_client)
        assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
        assert time.monotonic() - started < 2.0 and batch_requests.waiting == 0
    finally:
        batch_requests.release()
    assert batch_requests.held == 0


def test_a_queued_request_over_its_budget_gives_its_slot_back(api_client, demo, one_a_minute):
    """When this process's counts are too old to decide on (another process may have spent the budget), the request
    queues; the rate limit, checked once it holds the slot, refuses it then, and nothing stays held or queued."""
    from curriculum.api.throttling import FLUSH_SECONDS

    assert post_batch(api_client).status_code == 200
    time.sleep(FLUSH_SECONDS + 0.05)  # the counts read are stale now: only the shared cache can tell
    assert batch_requests.try_acquire()
    releaser = release_once_queued()
    refused = post_batch(api_client)
    releaser.join(timeout=5)
    assert refused.status_code == 429
    assert batch_requests.held == 0 and batch_requests.waiting == 0


def test_the_endpoint_refuses_when_the_wait_runs_out(api_client, demo, settings):
    settings.API_BATCH_QUEUE, settings.API_BATCH_QUEUE_MS = 1, 100
    assert batch_requests.try_acquire()
    try:
        refused = post_batch(api_client)
    finally:
        batch_requests.release()
    assert refused.status_code == 503 and refused["Retry-After"] == "1"
    message = refused.json()["error"]["message"]
    assert "API_BATCH_CONCURRENCY" in message and "API_BATCH_QUEUE" in message and "100 ms" in message
    assert batch_requests.held == 0 and batch_requests.waiting == 0
