"""A cache outage is not an API outage: the throttle counts in the process (with a warning) when Redis refuses
connections or accepts and never answers, and asks Redis again after FALLBACK_SECONDS."""
from __future__ import annotations

import os
import time

import pytest

from curriculum.api import throttling

RECOMMEND = "/api/v1/recommendations"
BODY = {"curriculum": "demo", "learner": "u1"}
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/7")


@pytest.fixture(autouse=True)
def _no_outage_before_or_after():
    throttling._Fallback.reset()
    yield
    throttling._Fallback.reset()


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=3)


def use_redis_cache(settings, location: str, rate: str = "1000/min") -> None:
    """The production cache block (RedisCache with the settings' client timeouts) at `location`."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location,
                                   "OPTIONS": settings.REDIS_CACHE_OPTIONS}}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": rate}}


def recommend(client) -> int:
    return client.post(RECOMMEND, BODY, format="json").status_code


def throttle_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "curriculum.api.throttling" and r.levelname == "WARNING"]


def test_with_the_cache_refusing_connections_the_api_answers_and_warns_once(api_client, demo, settings, dead_port, caplog):
    use_redis_cache(settings, f"redis://127.0.0.1:{dead_port}/0")
    assert [recommend(api_client) for _ in range(5)] == [200] * 5
    warnings = throttle_warnings(caplog)
    assert len(warnings) == 1 and "ConnectionError" in warnings[0] and "counting requests in this process" in warnings[0]


def test_the_budget_is_still_enforced_while_the_cache_is_down(api_client, demo, settings, dead_port):
    use_redis_cache(settings, f"redis://127.0.0.1:{dead_port}/0", rate="3/min")
    assert [recommend(api_client) for _ in range(4)] == [200, 200, 200, 429]


def test_a_bad_token_is_still_a_401_while_the_cache_is_down(client, demo, settings, dead_port):
    # the token cache is per process (curriculum/api/authentication.py), not Django's cache: it cannot fail so
    use_redis_cache(settings, f"redis://127.0.0.1:{dead_port}/0")
    response = client.post(RECOMMEND, BODY, content_type="application/json", HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert response.status_code == 401 and response.json()["error"]["message"] == "Invalid token."


def test_a_hung_cache_costs_one_client_timeout_then_is_left_alone_until_the_fallback_ends(
    api_client, demo, settings, hung_server, monkeypatch, caplog
):
    clock = [1000.0]
    monkeypatch.setattr(throttling, "_monotonic", lambda: clock[0])
    use_redis_cache(settings, f"redis://127.0.0.1:{hung_server.port}/0")

    started = time.monotonic()
    assert recommend(api_client) == 200
    assert time.monotonic() - started < 5  # not a speed check: without a socket timeout this never returns
    assert hung_server.accepted == 1
    assert "TimeoutError" in throttle_warnings(caplog)[0]

    clock[0] += throttling.FALLBACK_SECONDS - 0.5
    assert [recommend(api_client) for _ in range(5)] == [200] * 5
    assert hung_server.accepted == 1  # counted in the process: the hung server was not asked again

    clock[0] += 1.0  # the fallback is over: the shared cache is tried again (and found hung again)
    assert recommend(api_client) == 200
    assert hung_server.accepted == 2 and len(throttle_warnings(caplog)) == 2


def test_with_a_healthy_redis_the_budget_is_counted_in_redis(api_client, demo, settings, caplog):
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at TEST_REDIS_URL={TEST_REDIS_URL}: {exc}")
    use_redis_cache(settings, TEST_REDIS_URL, rate="3/min")
    from django.core.cache import cache

    cache.clear()
    try:
        assert [recommend(api_client) for _ in range(4)] == [200, 200, 200, 429]
        counts = [int(client.get(k)) for k in client.scan_iter("*throttle:user:*")]
        assert 3 in counts  # the refused request gave its count back
        assert throttle_warnings(caplog) == []
    finally:
        cache.clear()
