"""Answers are rendered by the output serializers the OpenAPI schema documents: each answer has exactly the fields
of its schema component."""
from __future__ import annotations

import json

import pytest
import yaml

from curriculum.api.errors import ApiError, error_body
from curriculum.api.serializers import ErrorSerializer, RecommendationSerializer, recommendation_body, render
from curriculum.serving import Recommendation


@pytest.fixture
def components(client):
    return yaml.safe_load(client.get("/api/schema/").content)["components"]["schemas"]


def assert_documented(answer: dict, component: dict) -> None:
    assert list(answer) == list(component["properties"])
    assert set(component.get("required", [])) <= set(answer)


@pytest.mark.parametrize("version, policy", [(None, None), (7, {"version": 7})])
def test_a_recommendation_names_the_version_that_answered_or_null(version, policy):
    rec = Recommendation(concept="c1", scores={"c1": 0.75, "c0": 0.25}, policy_version=version,
                         strategy="policy" if version else "fallback:lowest_recall", unscored=("c9",),
                         recommendation_id="0b8e5a8e-9a53-4f4e-9d55-3c1e6b2f7a10")

    assert json.loads(json.dumps(RecommendationSerializer(rec).data)) == {
        "recommendation_id": "0b8e5a8e-9a53-4f4e-9d55-3c1e6b2f7a10", "concept": "c1", "scores": {"c1": 0.75, "c0": 0.25}, "policy": policy, "strategy": rec.strategy,
        "unscored": ["c9"],
    }


def test_the_shared_serializer_renders_each_answer_from_its_own_instance():
    first = Recommendation(concept="c1", scores={"c1": 1.0}, policy_version=2, strategy="policy")
    second = Recommendation(concept="c0", scores={"c0": 0.5, "c2": 0.5}, policy_version=None,
                            strategy="fallback:lowest_recall", unscored=("c3",))

    rendered = [render(RecommendationSerializer, rec) for rec in (first, second, first)]

    assert rendered[0] == rendered[2] == RecommendationSerializer(first).data
    assert rendered[1] == RecommendationSerializer(second).data != rendered[0]



@pytest.mark.parametrize("rec", [
    Recommendation(concept="c1", scores={"c1": 0.75, "c0": 0.25}, policy_version=7, strategy="policy",
                   unscored=("c9",), recommendation_id="0b8e5a8e-9a53-4f4e-9d55-3c1e6b2f7a10", propensity=0.5),
    Recommendation(concept="c0", scores={"c0": 0.0, "c2": 1, "c3": 0.123457}, policy_version=None,
                   strategy="fallback:lowest_recall"),
])
def test_the_direct_body_is_what_the_serializer_renders(rec):
    body = recommendation_body(rec)
    assert body == render(RecommendationSerializer, rec)
    assert list(body) == list(render(RecommendationSerializer, rec))  # the same order
    assert json.dumps(body) == json.dumps(render(RecommendationSerializer, rec))

def test_an_error_names_the_index_only_for_a_problem_that_has_one():
    body = error_body("item 1: grade: bad (and 1 more)", [{"index": 1, "field": "grade", "message": "bad"},
                                                          {"field": "body", "message": "worse"}])

    assert json.dumps(body) == json.dumps({"error": {"message": "item 1: grade: bad (and 1 more)", "fields": [
        {"index": 1, "field": "grade", "message": "bad"}, {"field": "body", "message": "worse"}]}})
    assert ErrorSerializer(ApiError("no route")).data == {"error": {"message": "no route", "fields": []}}


@pytest.mark.django_db
def test_each_answer_has_the_fields_its_schema_component_documents(api_client, make_curriculum, components):
    make_curriculum("demo", concepts=3)
    review = {"curriculum": "demo", "learner": "u1", "concept": "c1", "correct": True,
              "reviewed_at": "2026-01-05T09:00:00Z"}

    stored = api_client.post("/api/v1/reviews", review, format="json")
    recommended = api_client.post("/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}, format="json")
    refused = api_client.post("/api/v1/reviews", [review, {**review, "grade": 9}], format="json")

    assert (stored.status_code, recommended.status_code, refused.status_code) == (201, 200, 400)
    assert_documented(stored.json(), components["ReviewResult"])
    assert_documented(recommended.json(), components["Recommendation"])
    assert_documented(refused.json(), components["Error"])
    assert_documented(refused.json()["error"], components["ErrorDetail"])
    assert_documented(refused.json()["error"]["fields"][0], components["ErrorField"])


def test_a_shared_request_serializer_validates_each_body_on_its_own():
    from concurrent.futures import ThreadPoolExecutor

    from curriculum.api.serializers import RecommendationRequestSerializer, validate

    bodies = [{"curriculum": "demo", "learner": "u1"}, {"curriculum": "demo", "learner": " ", "colour": 1},
              {"curriculum": "demo", "learner": 7, "candidates": ["c1", "c1"]}, {"learner": "u2"}]
    alone = []
    for body in bodies:
        fresh = RecommendationRequestSerializer(data=body)
        alone.append((fresh.validated_data, None) if fresh.is_valid() else (None, fresh.errors))
    assert [validate(RecommendationRequestSerializer, b) for b in bodies * 2] == alone * 2
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda b: validate(RecommendationRequestSerializer, b), bodies * 25)) == alone * 25
