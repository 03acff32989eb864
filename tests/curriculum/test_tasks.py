"""Enqueueing from a request never holds it: a promotion answers with the broker down or hung, and the
re-encoding it could not enqueue is caught up by the periodic task and when a worker starts."""
from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from crlsite.celery import app, publish
from curriculum import tasks
from curriculum.selectors import serving_spec
from curriculum.models import LearnerState
from curriculum.reviews.store import record_reviews
from curriculum.services import promote_policy, register_policy
from training.rl.encoder import EncoderConfig

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/7")


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


@pytest.fixture
def broker(monkeypatch):
    """Point the Celery app at another broker URL for this test (Celery reads CELERY_BROKER_URL from the environment
    before its configuration, as CI sets it: both are changed)."""

    def use(url: str) -> None:
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        monkeypatch.setattr(app.conf, "broker_url", url)

    return use


def policy(curriculum, fake_artifact_dir, tag: str, factors: tuple[float, ...]):
    encoder = EncoderConfig(estimator="halflife", num_concepts=5, concept_stability=factors)
    return register_policy(curriculum=curriculum, artifact_dir=fake_artifact_dir(tag),
                           config={"encoder": encoder.to_dict(), "context_length": 4})


def reviews(n_learners: int) -> list[dict]:
    return [{"curriculum": "demo", "learner": f"u{i}", "concept": f"c{c}", "correct": True, "grade": 3,
             "reviewed_at": (T0 + dt.timedelta(minutes=10 * c + i)).isoformat()}
            for i in range(n_learners) for c in range(3)]


def timed_promotion(target, django_capture_on_commit_callbacks) -> float:
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        promote_policy(policy=target, force=True, reason="test")
    return time.monotonic() - started


def enqueue_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "could not enqueue" in r.getMessage()]


def test_a_promotion_answers_with_the_broker_refusing_connections(
    demo, fake_artifact_dir, broker, dead_port, caplog, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{dead_port}/0")
    target = policy(demo, fake_artifact_dir, "a", (1.0,) * 5)
    assert timed_promotion(target, django_capture_on_commit_callbacks) < 2.0  # a hang check, not a speed check
    target.refresh_from_db()
    assert target.status == "active"
    assert len(enqueue_warnings(caplog)) == 1 and tasks.REENCODE_TASK in enqueue_warnings(caplog)[0]


def test_a_promotion_answers_with_a_broker_that_accepts_and_never_answers(
    demo, fake_artifact_dir, broker, hung_server, caplog, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{hung_server.port}/0")
    target = policy(demo, fake_artifact_dir, "a", (1.0,) * 5)
    assert timed_promotion(target, django_capture_on_commit_callbacks) < 2.0
    assert hung_server.accepted >= 1  # it did reach the hung broker, and gave up on it
    target.refresh_from_db()
    assert target.status == "active" and "Timeout" in enqueue_warnings(caplog)[0]


def test_publish_to_a_healthy_redis_broker_queues_the_message(broker):
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at TEST_REDIS_URL={TEST_REDIS_URL}: {exc}")
    broker(TEST_REDIS_URL)
    client.delete("default")
    try:
        assert publish(tasks.REENCODE_TASK, args=[123]) is True
        assert client.llen("default") == 1
        assert b"reencode_learner_states" in client.lindex("default", 0)
    finally:
        client.delete("default")


def test_lagging_curricula_are_found_and_re_encoded_by_the_periodic_task(
    demo, fake_artifact_dir, broker, dead_port, django_capture_on_commit_callbacks
):
    broker(f"redis://127.0.0.1:{dead_port}/0")  # every re-encoding message is lost
    timed_promotion(policy(demo, fake_artifact_dir, "a", (1.0, 2.0, 1.0, 1.0, 1.0)), django_capture_on_commit_callbacks)
    record_reviews(items=reviews(4))
    assert tasks.curricula_with_lagging_states() == []  # written after v1's promotion: in its encoding
    timed_promotion(policy(demo, fake_artifact_dir, "b", (0.5, 1.0, 4.0, 1.0, 1.0)), django_capture_on_commit_callbacks)
    assert tasks.curricula_with_lagging_states() == [demo.pk]

    assert tasks.reencode_lagging_learner_states() == {demo.pk: 4}
    spec = serving_spec(curriculum_id=demo.pk)
    assert all(spec.load(row.data, row.history_states) is not None for row in LearnerState.objects.all())
    assert tasks.curricula_with_lagging_states() == []
    assert tasks.reencode_lagging_learner_states() == {}


@pytest.mark.integration
@pytest.mark.slow
def test_a_starting_worker_re_encodes_what_a_lost_message_left_behind(
    request, transactional_db, make_curriculum, fake_artifact_dir, monkeypatch, dead_port, wait_until
):
    demo = make_curriculum("demo", concepts=5)
    with monkeypatch.context() as m:
        m.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{dead_port}/0")  # the promotions' messages are lost
        m.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{dead_port}/0")
        for tag, factors in (("a", (1.0, 2.0, 1.0, 1.0, 1.0)), ("b", (0.5, 1.0, 4.0, 1.0, 1.0))):
            promote_policy(policy=policy(demo, fake_artifact_dir, tag, factors), force=True, reason="test")
            if tag == "a":
                record_reviews(items=reviews(3))
    assert tasks.curricula_with_lagging_states() == [demo.pk]

    worker = request.getfixturevalue("celery_worker")  # starts now: its worker_ready hook queues the catch-up
    wait_until(lambda: tasks.curricula_with_lagging_states() == [], timeout=90,
               what=f"the starting worker to re-encode (log: {worker.log_path})")
    assert "reencode_lagging_learner_states" in worker.log_path.read_text()
