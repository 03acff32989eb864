"""The per-token budget holds across two gunicorn workers counting in batches over one Redis (integration)."""
from __future__ import annotations

import http.client
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from curriculum.api.throttling import FLUSH_FRACTION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 1000  # per minute: each worker keeps up to FLUSH_FRACTION * RATE = 10 requests pending
REDIS_URL = os.environ.get("TEST_THROTTLE_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture
def redis_url():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at TEST_THROTTLE_REDIS_URL={REDIS_URL}: {exc}")
    yield client


def test_two_workers_together_grant_the_rate(other_process_database_url, gunicorn_server, api_user, redis_url,
                                             make_curriculum):
    from rest_framework.authtoken.models import Token

    make_curriculum("demo", concepts=3)
    token = Token.objects.create(user=api_user).key
    for key in redis_url.scan_iter(f"*throttle:user:{api_user.pk}:*"):  # an earlier run's counts for this user id
        redis_url.delete(key)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL"}}
    env.update(DATABASE_URL=other_process_database_url, CACHE_URL=REDIS_URL, API_THROTTLE_RATE=f"{RATE}/min",
               LOG_LEVEL="ERROR", OMP_NUM_THREADS="1")
    port = gunicorn_server(env, workers=2)
    if time.time() % 60 > 45:  # all within one minute's window: a sliding window would grant a little more
        time.sleep(61 - time.time() % 60)

    def client(n: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        statuses = []
        for _ in range(n):
            conn.request("GET", "/api/v1/curricula/demo/policy", headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()
        return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for part in pool.map(client, [160] * 8) for s in part]
    granted = statuses.count(404)  # no active policy: a granted request's answer
    assert statuses.count(429) + granted == len(statuses)
    slack = 2 * FLUSH_FRACTION * RATE  # what each worker may hold pending
    assert RATE - slack <= granted <= RATE + slack
