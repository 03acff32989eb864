"""One error style across the API: DRF's default messages in the house style naming the field, duplicate JSON keys
and non-JSON bodies refused, blank idempotency keys refused, repeated candidates counted once, a missing `correct` required."""
import json

import pytest

from curriculum.models import ReviewLog

RECOMMEND, REVIEWS = "/api/v1/recommendations", "/api/v1/reviews"
REVIEW = {"curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True,
          "reviewed_at": "2026-01-05T09:00:00Z"}


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=3)


def error_of(response, status=400):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("body, field, message", [
    ({"curriculum": "demo", "learner": "u1", "candidates": []}, "candidates", "expected at least 1 item(s)"),
    ({"learner": "u1"}, "curriculum", "this field is required"),
    ({"curriculum": "demo", "learner": None}, "learner", "this field is required (a non-blank learner id)"),
    ({"curriculum": "demo", "learner": "u1", "at": None}, "at", "expected a value, got null"),
    ({"curriculum": "demo", "learner": "u1", "candidates": "c0"}, "candidates", "expected a list, got str"),
    (["demo"], "body", "expected a JSON object, got list"),
])
def test_drf_default_messages_are_in_the_house_style_naming_the_field(api_client, demo, body, field, message):
    error = error_of(post(api_client, RECOMMEND, body))
    assert {"field": field, "message": message} in error["fields"]
    assert error["message"].startswith(f"{field}: ")
    for problem in error["fields"]:  # nothing of DRF's "This field ..." / "Ensure ..." / "Invalid data." left
        assert problem["message"][0].islower() and not problem["message"].endswith("."), problem


def test_a_duplicate_key_in_a_json_object_is_400_naming_it(api_client, demo):
    raw = '{"curriculum": "demo", "learner": "u1", "concept": "c0", "correct": true, "correct": false, ' \
          '"reviewed_at": "2026-01-05T09:00:00Z"}'
    error = error_of(api_client.post(REVIEWS, data=raw, content_type="application/json"))
    assert error["fields"] == [{"field": "correct", "message": "duplicate key in a JSON object: send each field once"}]
    assert ReviewLog.objects.count() == 0
    error = error_of(api_client.post(RECOMMEND, data='{"learner": "a", "learner": "b", "curriculum": "demo"}',
                                     content_type="application/json"))
    assert error["fields"][0]["field"] == "learner"


def test_a_non_json_content_type_is_415_in_the_error_shape(api_client, demo):
    error = error_of(api_client.post(RECOMMEND, data="curriculum=demo&learner=u1",
                                     content_type="application/x-www-form-urlencoded"), 415)
    assert error["fields"][0]["field"] == "Content-Type"
    assert "application/x-www-form-urlencoded" in error["message"]
    error_of(api_client.post(REVIEWS, data=json.dumps(REVIEW), content_type="text/plain"), 415)


@pytest.mark.parametrize("key", ["", "   ", "\t\n"])
def test_an_idempotency_key_of_only_whitespace_is_refused_like_an_empty_one(api_client, demo, key):
    error = error_of(post(api_client, REVIEWS, {**REVIEW, "idempotency_key": key}))
    assert error["fields"][0]["field"] == "idempotency_key" and "non-blank" in error["fields"][0]["message"]
    assert ReviewLog.objects.count() == 0


def test_duplicate_candidates_are_deduplicated_as_documented(api_client, demo):
    from curriculum.api.serializers import RecommendationRequestSerializer

    serializer = RecommendationRequestSerializer(data={"curriculum": "demo", "learner": "u1",
                                                       "candidates": ["c2", "c0", "c2", "c0"]})
    assert serializer.is_valid() and serializer.validated_data["candidates"] == ["c2", "c0"]
    assert "deduplicated" in str(serializer.fields["candidates"].help_text)
    body = post(api_client, RECOMMEND, {"curriculum": "demo", "learner": "u1", "candidates": ["c1", "c1", "c0"]}).json()
    assert sorted(body["scores"]) == ["c0", "c1"] and body["concept"] in {"c0", "c1"}


def test_a_missing_correct_says_this_field_is_required(api_client, demo):
    body = {k: v for k, v in REVIEW.items() if k != "correct"}
    error = error_of(post(api_client, REVIEWS, body))
    assert error["fields"] == [{"field": "correct", "message": "this field is required (true or false)"}]


def test_the_policy_endpoint_404_names_key(api_client, demo):
    error = error_of(api_client.get("/api/v1/curricula/nope/policy"), 404)
    assert error["fields"] == [{"field": "key", "message": "unknown curriculum 'nope'"}]
