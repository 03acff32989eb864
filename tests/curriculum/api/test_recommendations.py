"""POST /api/v1/recommendations: the active policy answers, the fallback without one, and bad bodies are 400."""
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap

import pytest

from curriculum.models import Learner, LearnerState
from curriculum.reviews.store import record_reviews
from curriculum.services import promote_policy

URL = "/api/v1/recommendations"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def reviews(learner, steps, start=T0):
    """[(concept index, correct, minutes after start)] -> review items."""
    return [
        {"curriculum": "demo", "learner": learner, "concept": f"c{c}", "correct": ok, "grade": 3 if ok else 1,
         "reviewed_at": (start + dt.timedelta(minutes=m)).isoformat()}
        for c, ok, m in steps
    ]


def test_without_an_active_policy_the_fallback_answers_never_reviewed_first(api_client, demo):
    # FSRS-6 counts whole days (same day: recall 1 unfitted): c2 a day after c0, asked two days after c2
    record_reviews(items=reviews("u1", [(0, True, 0), (2, True, 24 * 60)]))
    response = post(api_client, {"curriculum": "demo", "learner": "u1", "at": (T0 + dt.timedelta(days=3)).isoformat()})
    assert response.status_code == 200
    body = response.json()
    assert body["strategy"] == "fallback:lowest_recall" and body["policy"] is None
    assert body["concept"] == "c1"  # never reviewed, lowest position
    assert set(body["scores"]) == {"c0", "c1", "c2", "c3", "c4"}
    assert body["scores"]["c1"] == 0.0 and 0 < body["scores"]["c0"] < body["scores"]["c2"] <= 1


def test_the_fallback_picks_the_lowest_recall_once_everything_was_reviewed(api_client, demo):
    # c3 reviewed first and wrong: the lowest estimated recall two days later (FSRS-6 counts whole days)
    record_reviews(items=reviews("u1", [(3, False, 0), (0, True, 1), (1, True, 2), (2, True, 3), (4, True, 4)]))
    body = post(api_client, {"curriculum": "demo", "learner": "u1", "at": (T0 + dt.timedelta(days=2)).isoformat()}).json()
    assert body["concept"] == "c3"
    assert body["scores"]["c3"] == min(body["scores"].values())


def test_the_fallback_offers_a_concept_answered_wrong_minutes_ago(api_client, demo):
    # every concept learnt on day 0; two days later c2 is answered wrong, the others right in the next minutes.
    # The default same-day rule (fsrs6.default_same_day_stability): 5 minutes after Again, with s = 1 minute,
    # R = (1 + FACTOR * 5) ** -w20 = 0.7605; the others, 1-4 minutes after Good (s = w2 days), stay above 0.999.
    # Without the rule every concept reviewed that day has recall 1.0 and c0 (first position) would be offered.
    day2 = T0 + dt.timedelta(days=2)
    record_reviews(items=reviews("u1", [(c, True, c) for c in range(5)])
                   + reviews("u1", [(2, False, 0), (0, True, 1), (1, True, 2), (3, True, 3), (4, True, 4)], start=day2))
    body = post(api_client, {"curriculum": "demo", "learner": "u1",
                             "at": (day2 + dt.timedelta(minutes=5)).isoformat()}).json()
    assert body["strategy"] == "fallback:lowest_recall"
    assert body["concept"] == "c2"
    assert body["scores"]["c2"] == pytest.approx(0.7605, abs=1e-4) and body["scores"]["c2"] < 0.9
    assert min(v for k, v in body["scores"].items() if k != "c2") > 0.999


def test_the_active_policy_answers_with_its_version_and_probabilities(api_client, demo, make_real_policy):
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    record_reviews(items=reviews("u1", [(0, True, 0), (1, False, 3)]))
    body = post(api_client, {"curriculum": "demo", "learner": "u1"}).json()
    assert body["strategy"] == "policy" and body["policy"] == {"version": 1}
    assert set(body["scores"]) == {f"c{i}" for i in range(5)}
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["concept"] == max(body["scores"], key=body["scores"].get)


@pytest.mark.parametrize("with_policy", [False, True])
def test_candidates_restrict_the_choice(api_client, demo, make_real_policy, with_policy):
    if with_policy:
        promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    for candidates in (["c3"], ["c4", "c2"], ["c1", "c1", "c0"]):
        body = post(api_client, {"curriculum": "demo", "learner": "u1", "candidates": candidates}).json()
        assert body["concept"] in candidates
        assert set(body["scores"]) == set(candidates)


def test_unknown_candidates_are_400_naming_them(api_client, demo):
    response = post(api_client, {"curriculum": "demo", "learner": "u1", "candidates": ["c1", "zz", "yy"]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == [{"field": "candidates", "message": "unknown concepts 'zz', 'yy' in curriculum 'demo'"}]


def test_an_unknown_learner_is_a_new_learner_and_nothing_is_stored(api_client, demo, make_real_policy):
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    response = post(api_client, {"curriculum": "demo", "learner": "never-seen"})
    assert response.status_code == 200 and response.json()["strategy"] == "policy"
    assert not Learner.objects.exists() and not LearnerState.objects.exists()


def test_an_unknown_curriculum_is_400(api_client, demo):
    response = post(api_client, {"curriculum": "nope", "learner": "u1"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == [{"field": "curriculum", "message": "unknown curriculum 'nope'"}]


@pytest.mark.parametrize("path", ["/api/v1/recommendations", "/api/v1/recommendations/batch"])
@pytest.mark.parametrize("key", ["no pe!", "k" * 101, 5, "", None])
def test_a_curriculum_that_is_not_a_key_gets_the_reviews_routes_message(api_client, demo, path, key):
    """One message per mistake on every route: the reviews route's for the same value."""
    body = {"curriculum": key, **({"learners": ["u1"]} if path.endswith("batch") else {"learner": "u1"})}
    response = api_client.post(path, data=json.dumps(body), content_type="application/json")
    review = {"curriculum": key, "learner": "u1", "concept": "c0", "correct": True,
              "reviewed_at": "2026-01-05T09:00:00Z"}
    reviews = api_client.post("/api/v1/reviews", data=json.dumps(review), content_type="application/json")
    assert response.status_code == reviews.status_code == 400
    (problem,) = response.json()["error"]["fields"]
    expected = [p for p in reviews.json()["error"]["fields"] if p["field"] == "curriculum"]
    assert problem == {"field": "curriculum", "message": expected[0]["message"]}


@pytest.mark.parametrize("learner", ["", "  ", None])
def test_a_blank_learner_id_gets_one_message_however_blank(api_client, demo, learner):
    response = post(api_client, {"curriculum": "demo", "learner": learner})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == [
        {"field": "learner", "message": "this field is required (a non-blank learner id)"}]


@pytest.mark.parametrize("body, field", [
    ({"learner": "u1"}, "curriculum"),
    ({"curriculum": "demo"}, "learner"),
    ({"curriculum": "demo", "learner": ""}, "learner"),
    ({"curriculum": "demo", "learner": None}, "learner"),
    ({"curriculum": "demo", "learner": True}, "learner"),
    ({"curriculum": "demo", "learner": {"id": [1, {"x": []}]}}, "learner"),
    ({"curriculum": ["demo"], "learner": "u1"}, "curriculum"),
    ({"curriculum": "demo", "learner": "u" * 201}, "learner"),
    ({"curriculum": "demo", "learner": "u\x00"}, "body"),
    ({"curriculum": "demo", "learner": "u1", "candidates": "c1"}, "candidates"),
    ({"curriculum": "demo", "learner": "u1", "candidates": []}, "candidates"),
    ({"curriculum": "demo", "learner": "u1", "candidates": ["c1", 2]}, "candidates[1]"),
    ({"curriculum": "demo", "learner": "u1", "candidates": ["c1", ["c2"]]}, "candidates[1]"),
    ({"curriculum": "demo", "learner": "u1", "candidates": ["c1"] * 10_001}, "candidates"),
    ({"curriculum": "demo", "learner": "u1", "at": "2026-01-05T09:00:00"}, "at"),
    ({"curriculum": "demo", "learner": "u1", "at": "soon"}, "at"),
    ({"curriculum": "demo", "learner": "u1", "at": 1767603600}, "at"),
    ({"curriculum": "demo", "learner": "u1", "at": "0001-01-01T00:00:00+01:00"}, "at"),
    ({"curriculum": "demo", "learner": "u\ud800"}, "body"),
    ({"curriculum": "demo", "learner": 10**300}, "learner"),
    ({"curriculum": "demo", "learner": "u1", "canddates": ["c1"]}, "canddates"),
    ([{"curriculum": "demo", "learner": "u1"}], "body"),
    ("demo", "body"),
])
def test_invalid_bodies_are_400_naming_the_field(api_client, demo, body, field):
    response = post(api_client, body)
    assert response.status_code == 400, response.content
    assert field in [f["field"] for f in response.json()["error"]["fields"]]


def test_malformed_json_is_400(api_client, demo):
    response = api_client.post(URL, data=b'{"curriculum": "demo", "learner": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "body"


def test_without_a_token_it_is_401(client, demo):
    response = post(client, {"curriculum": "demo", "learner": "u1"})
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert "error" in response.json()


def test_a_promotion_between_two_requests_changes_the_answering_version(api_client, demo, make_real_policy):
    v1, v2 = make_real_policy(demo, seed=1), make_real_policy(demo, seed=2)
    promote_policy(policy=v1, reason="test")
    record_reviews(items=reviews("u1", [(0, True, 0), (4, False, 2)]))
    first = post(api_client, {"curriculum": "demo", "learner": "u1"})
    promote_policy(policy=v2, reason="test", force=True)
    second = post(api_client, {"curriculum": "demo", "learner": "u1"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["policy"] == {"version": 1} and second.json()["policy"] == {"version": 2}
    assert first.json()["scores"] != second.json()["scores"]


def test_recommendations_are_the_same_from_incremental_and_full_history_state(api_client, demo, make_real_policy):
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    # one review at a time, one late (out of order), one batch with equal times
    steps = [(0, True, 0), (1, False, 10), (2, True, 20), (1, True, 30), (3, True, 5), (4, True, 40), (0, False, 40)]
    for item in reviews("u1", steps[:4]):
        record_reviews(items=[item])
    record_reviews(items=reviews("u1", steps[4:5]))
    record_reviews(items=reviews("u1", steps[5:]))
    at = {"at": (T0 + dt.timedelta(hours=3)).isoformat()}
    incremental = post(api_client, {"curriculum": "demo", "learner": "u1", **at}).json()
    stored = LearnerState.objects.get()
    LearnerState.objects.all().delete()  # now served from the full history
    from_history = post(api_client, {"curriculum": "demo", "learner": "u1", **at}).json()
    # two recommendations, two ids; everything else the same
    assert incremental.pop("recommendation_id") != from_history.pop("recommendation_id")
    assert incremental == from_history
    assert incremental["strategy"] == "policy" and stored.review_count == len(steps)


@pytest.mark.django_db(transaction=True)
def test_serving_a_recommendation_never_imports_torch(demo, make_real_policy, settings):
    # a web process must not pay for torch: check in a fresh interpreter, against this test's database
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    record_reviews(items=reviews("u1", [(0, True, 0)]))
    from django.db import connection

    script = textwrap.dedent("""
        import json, os, sys
        import django
        django.setup()
        from django.conf import settings
        settings.STORAGES = json.loads(os.environ["TEST_STORAGES"])
        settings.DATABASES["default"]["NAME"] = os.environ["TEST_DB_NAME"]
        from django.contrib.auth import get_user_model
        from rest_framework.test import APIClient
        client = APIClient()
        client.force_authenticate(get_user_model().objects.get_or_create(username="torch-check")[0])
        response = client.post("/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}, format="json")
        print(json.dumps({"status": response.status_code, "body": response.json(), "torch": "torch" in sys.modules}))
    """)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "crlsite.settings", "ALLOWED_HOSTS": "testserver",
           "TEST_STORAGES": json.dumps(settings.STORAGES), "TEST_DB_NAME": connection.settings_dict["NAME"]}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["body"]["strategy"] == "policy"
    assert result["torch"] is False


def test_concepts_added_after_training_are_left_to_the_fallback(api_client, demo, make_real_policy, make_curriculum):
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    make_curriculum("demo", concepts=6)  # c5 is outside the policy's action space
    only_new = post(api_client, {"curriculum": "demo", "learner": "u1", "candidates": ["c5"]}).json()
    assert only_new["strategy"] == "fallback:lowest_recall" and only_new["concept"] == "c5"
    mixed = post(api_client, {"curriculum": "demo", "learner": "u1", "candidates": ["c5", "c2"]}).json()
    assert mixed["strategy"] == "policy" and mixed["concept"] == "c2" and set(mixed["scores"]) == {"c2"}


def test_candidates_outside_the_active_version_are_listed_as_unscored(api_client, demo, make_real_policy):
    """Concepts added after the version was trained cannot be scored by it: the response says which."""
    from curriculum.services import ensure_curriculum

    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    ensure_curriculum(key=demo.key, concept_keys=["late1", "late2"])  # e.g. an import that adds concepts
    body = post(api_client, {"curriculum": demo.key, "learner": "u1"}).json()
    assert body["strategy"] == "policy" and body["unscored"] == ["late1", "late2"]
    assert "late1" not in body["scores"]
    body = post(api_client, {"curriculum": demo.key, "learner": "u1", "candidates": ["late2", "c1"]}).json()
    assert body["unscored"] == ["late2"] and list(body["scores"]) == ["c1"]
