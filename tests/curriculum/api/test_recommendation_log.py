"""Every served recommendation is logged with its propensity under the recommendation_id the answer carries, and a
review may carry that id back."""
import datetime as dt
import json
import uuid

import pytest

from curriculum.models import RecommendationLog, ReviewLog
from curriculum.services import promote_policy

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_a_fallback_recommendation_is_logged_under_the_id_it_answers_with(api_client, demo):
    answer = post(api_client, "/api/v1/recommendations",
                  {"curriculum": "demo", "learner": "u1", "candidates": ["c1", "c3"], "at": T0.isoformat()}).json()

    row = RecommendationLog.objects.get()
    assert str(row.id) == answer["recommendation_id"]
    assert (row.curriculum_id, row.learner, row.policy_id, row.concept) == (demo.pk, "u1", None, answer["concept"])
    assert (row.candidates, row.propensity, row.exploration, row.arm_id, row.served) == (2, 1.0, "argmax", None, True)
    assert row.at == T0


def test_a_policy_recommendation_names_the_deciding_version(api_client, demo, make_real_policy):
    policy = make_real_policy(demo, seed=1)
    promote_policy(policy=policy, reason="test")

    answer = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}).json()

    row = RecommendationLog.objects.get(pk=answer["recommendation_id"])
    assert row.policy_id == policy.pk and row.candidates == 5 and row.propensity == 1.0


def test_a_batch_logs_one_row_per_distinct_learner(api_client, demo):
    results = post(api_client, "/api/v1/recommendations/batch",
                   {"curriculum": "demo", "learners": ["u1", "u2", "u1"]}).json()["results"]

    assert results[0]["recommendation_id"] == results[2]["recommendation_id"] != results[1]["recommendation_id"]
    assert sorted(RecommendationLog.objects.values_list("learner", flat=True)) == ["u1", "u2"]


def test_nothing_is_logged_when_the_log_is_disabled(api_client, demo, settings):
    settings.RECOMMENDATION_LOG_ENABLED = False
    answer = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}).json()
    assert uuid.UUID(answer["recommendation_id"]) and not RecommendationLog.objects.exists()


def test_a_review_stores_the_recommendation_id_it_carries_back(api_client, demo):
    rec = post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}).json()
    review = {"curriculum": "demo", "learner": "u1", "concept": rec["concept"], "correct": True,
              "reviewed_at": T0.isoformat(), "recommendation_id": rec["recommendation_id"]}

    assert post(api_client, "/api/v1/reviews", review).status_code == 201
    assert str(ReviewLog.objects.get().recommendation_id) == rec["recommendation_id"]


@pytest.mark.parametrize("value", ["not-a-uuid", 7, "0b8e5a8e-9a53-4f4e-9d55-3c1e6b2f7a10-extra"])
def test_a_review_with_a_malformed_recommendation_id_is_refused_naming_the_field(api_client, demo, value):
    review = {"curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True, "reviewed_at": T0.isoformat(),
              "recommendation_id": value}

    response = post(api_client, "/api/v1/reviews", review)

    assert response.status_code == 400
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["recommendation_id"]
    assert not ReviewLog.objects.exists()


def test_softmax_exploration_logs_the_policys_own_probability_and_draws_with_it(api_client, demo, make_real_policy):
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    type(demo).objects.filter(pk=demo.pk).update(exploration="softmax", exploration_temperature=1.0)
    answers = [post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1", "at": T0.isoformat()})
               .json() for _ in range(400)]

    logged = {str(r.id): r for r in RecommendationLog.objects.all()}
    scores = answers[0]["scores"]
    for answer in answers:
        row = logged[answer["recommendation_id"]]
        assert row.exploration == "softmax" and row.propensity == pytest.approx(scores[answer["concept"]], abs=2e-6)
    counts = {key: sum(a["concept"] == key for a in answers) / len(answers) for key in scores}
    for key, probability in scores.items():  # 4 standard errors at 400 draws: at most 0.1
        assert counts[key] == pytest.approx(probability, abs=4 * (probability * (1 - probability) / 400) ** 0.5 + 1e-9)


def test_epsilon_greedy_on_the_fallback_logs_either_greedy_or_uniform_mass(api_client, demo):
    type(demo).objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=0.5)
    for _ in range(60):
        post(api_client, "/api/v1/recommendations", {"curriculum": "demo", "learner": "u1", "at": T0.isoformat()})

    # a new learner: the fallback's greedy choice is c0 (never reviewed, lowest position)
    propensities = dict(RecommendationLog.objects.values_list("concept", "propensity").distinct())
    assert propensities.pop("c0") == pytest.approx(0.5 + 0.5 / 5)
    assert propensities and list(propensities.values()) == pytest.approx([0.1] * len(propensities))
