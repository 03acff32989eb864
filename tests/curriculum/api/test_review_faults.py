"""Issue 13 on the API: future/ancient times, a reused idempotency key (409), a retried review without a key,
and one learner-id rule on every endpoint."""
import datetime as dt
import json

import pytest

from curriculum.models import ReviewLog
from curriculum.reviews import validation

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.timezone.utc)


def review(i=0, **overrides):
    item = {"curriculum": "demo", "learner": "u1", "concept": f"c{i % 5}", "correct": True, "grade": 3,
            "reviewed_at": (T0 + dt.timedelta(minutes=i)).isoformat()}
    item.update(overrides)
    return item


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def demo(make_curriculum, monkeypatch):
    monkeypatch.setattr(validation, "_now", lambda: NOW)
    return make_curriculum("demo", concepts=5)


@pytest.mark.parametrize("when", ["2099-01-01T00:00:00Z", "9000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                  "0001-01-01T00:00:00Z", "1989-12-31T23:59:59Z", "2026-02-01T12:05:01Z"])
def test_a_review_time_out_of_bounds_is_refused_naming_index_and_field(api_client, demo, when):
    response = post(api_client, "/api/v1/reviews", [review(0), review(1, reviewed_at=when)])

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0] == {**response.json()["error"]["fields"][0], "index": 1, "field": "reviewed_at"}
    assert not ReviewLog.objects.exists()


def test_a_review_within_the_tolerance_after_the_clock_is_accepted(api_client, demo):
    assert post(api_client, "/api/v1/reviews", review(0, reviewed_at="2026-02-01T12:05:00Z")).status_code == 201


def test_the_tolerance_is_a_setting(api_client, demo, settings):
    settings.CRL_REVIEW_FUTURE_TOLERANCE_SECONDS = 0
    assert post(api_client, "/api/v1/reviews", review(0, reviewed_at="2026-02-01T12:00:01Z")).status_code == 400


@pytest.mark.parametrize("when", ["2099-01-01T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_a_recommendation_at_out_of_bounds_is_refused(api_client, demo, when):
    response = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1", "at": when})

    assert response.status_code == 400 and response.json()["error"]["fields"][0]["field"] == "at"


def test_a_key_reused_for_another_review_is_a_409_naming_index_and_key_and_stores_nothing(api_client, demo):
    assert post(api_client, "/api/v1/reviews", review(0, idempotency_key="k1")).status_code == 201

    response = post(api_client, "/api/v1/reviews", [review(5), review(1, idempotency_key="k1")])

    assert response.status_code == 409
    assert response.json()["error"]["fields"][0]["index"] == 1
    assert response.json()["error"]["fields"][0]["field"] == "idempotency_key"
    assert ReviewLog.objects.count() == 1


@pytest.mark.parametrize("other", [{"concept": "c1"}, {"correct": False, "grade": 1}, {"learner": "u2"}])
def test_a_key_used_twice_in_one_batch_for_different_reviews_is_a_conflict(api_client, demo, other):
    response = post(api_client, "/api/v1/reviews", [review(0, idempotency_key="k"), review(0, idempotency_key="k", **other)])

    assert response.status_code == 409 and not ReviewLog.objects.exists()


def test_a_key_reused_in_another_curriculum_is_a_conflict(api_client, demo, make_curriculum):
    make_curriculum("other", concepts=5)
    post(api_client, "/api/v1/reviews", review(0, idempotency_key="k"))

    response = post(api_client, "/api/v1/reviews", review(0, idempotency_key="k", curriculum="other"))

    assert response.status_code == 409 and ReviewLog.objects.count() == 1


def test_a_retried_review_without_a_key_is_a_duplicate(api_client, demo):
    first = post(api_client, "/api/v1/reviews", review(0))
    again = post(api_client, "/api/v1/reviews", [review(0), review(0, reviewed_at="2026-01-05T09:00:00.000400Z")])

    assert first.json() == {"created": 1, "duplicates": 0}
    assert again.json() == {"created": 0, "duplicates": 2}  # the same millisecond is the same review
    assert ReviewLog.objects.count() == 1


@pytest.mark.parametrize("learner", ["   ", "", "a\u202eb", "a\x07b", "tab\there", "x" * 201])
@pytest.mark.parametrize("url", ["/api/v1/reviews", "/api/v1/recommendations"])
def test_one_learner_id_rule_on_every_endpoint(api_client, demo, learner, url):
    body = review(0, learner=learner) if url.endswith("reviews") else {"curriculum": "demo", "learner": learner}

    response = post(api_client, url, body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "learner"


def test_a_learner_id_is_trimmed_on_every_endpoint(api_client, demo):
    assert post(api_client, "/api/v1/reviews", review(0, learner="  u7 ")).status_code == 201
    response = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": " u7"})

    assert response.status_code == 200
    assert ReviewLog.objects.get().learner.external_id == "u7"
