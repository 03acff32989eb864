"""POST /api/v1/recommendations/batch: each learner answered as the single endpoint answers it, per-learner errors,
limits, and a rate limit that counts learners."""
import datetime as dt
import json

import pytest

from curriculum.reviews.fields import MAX_ID_LENGTH
from curriculum.reviews.store import record_reviews
from curriculum.serving import MAX_BATCH_LEARNERS
from curriculum.services import promote_policy

URL = "/api/v1/recommendations/batch"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
AT = (T0 + dt.timedelta(days=3)).isoformat()


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def single(client, learner):
    return client.post("/api/v1/recommendations", data=json.dumps({"curriculum": "demo", "learner": learner, "at": AT}),
                       content_type="application/json").json()


def practise(learner, count):
    """`count` reviews of learner, one concept after another, an hour apart."""
    return [{"curriculum": "demo", "learner": learner, "concept": f"c{i % 5}", "correct": i % 3 != 0,
             "reviewed_at": (T0 + dt.timedelta(hours=i)).isoformat()} for i in range(count)]


@pytest.mark.parametrize("with_policy, per_call", [(False, 256), (True, 256), (True, 3)])
def test_each_learner_gets_what_the_single_endpoint_answers(api_client, demo, make_real_policy, monkeypatch,
                                                            with_policy, per_call):
    from curriculum import serving

    monkeypatch.setattr(serving, "_LEARNERS_PER_CALL", per_call)  # 3: the batch in several DTLite calls
    if with_policy:
        promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    # histories shorter than, equal to and longer than the context (4): contexts of different lengths, padded
    counts = {"u0": 0, "u1": 1, "u2": 2, "u3": 3, "u7": 7}
    for learner, count in counts.items():
        if count:
            record_reviews(items=practise(learner, count))
    learners = [*counts, "never-seen", "u2"]
    response = post(api_client, {"curriculum": "demo", "learners": learners, "at": AT})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["learner"] for r in results] == learners
    for result, learner in zip(results, learners):
        alone = single(api_client, learner)
        assert {k: v for k, v in result.items() if k not in ("learner", "scores", "recommendation_id")} == \
               {k: v for k, v in alone.items() if k not in ("scores", "recommendation_id")}
        assert result["scores"] == pytest.approx(alone["scores"], abs=2e-6)
    assert results[2] == results[-1]  # an id sent twice is answered twice
    assert {r["strategy"] for r in results} == {"policy" if with_policy else "fallback:lowest_recall"}


def test_invalid_learner_ids_are_errors_of_those_learners_only(api_client, demo):
    sent = ["u1", " ", True, {"id": 1}, "x" * (MAX_ID_LENGTH + 1), "bad\x07id", 42]
    response = post(api_client, {"curriculum": "demo", "learners": sent})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(sent)
    assert results[0]["learner"] == "u1" and results[0]["concept"] == "c0"
    assert results[6]["learner"] == 42 and results[6]["concept"] == "c0"
    for index in range(1, 6):
        error = results[index]["error"]
        assert set(results[index]) == {"learner", "error"}
        assert error["fields"][0]["field"] == f"learners[{index}]" and error["message"].startswith(f"learners[{index}]: ")
    assert [results[i]["learner"] for i in range(1, 6)] == [" ", None, None, "x" * (MAX_ID_LENGTH + 1), "bad\x07id"]


def test_integer_ids_beyond_64_bits_are_echoed_exactly(api_client, demo):
    """orjson writes no integer beyond 64 bits; the API's renderer falls back to REST framework's for such a body."""
    big, huge = 12345678901234567890123, 10 ** 300  # a valid id; one longer than MAX_ID_LENGTH digits
    response = post(api_client, {"curriculum": "demo", "learners": ["u1", big, huge]})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    results = json.loads(response.content)["results"]
    assert [r["learner"] for r in results] == ["u1", big, huge]
    assert results[1]["concept"] == "c0" and set(results[2]) == {"learner", "error"}


def test_a_batch_of_only_invalid_ids_still_answers_each(api_client, demo):
    results = post(api_client, {"curriculum": "demo", "learners": [None, ""]}).json()["results"]
    assert [sorted(r) for r in results] == [["error", "learner"], ["error", "learner"]]
    unknown = post(api_client, {"curriculum": "nope", "learners": [None]})  # the curriculum is checked all the same
    assert unknown.status_code == 400 and unknown.json()["error"]["fields"][0]["field"] == "curriculum"


@pytest.mark.parametrize("body, field", [
    ({"curriculum": "demo", "learners": []}, "learners"),
    ({"curriculum": "demo", "learners": [f"u{i}" for i in range(MAX_BATCH_LEARNERS + 1)]}, "learners"),
    ({"curriculum": "demo", "learners": "u1"}, "learners"),
    ({"curriculum": "demo"}, "learners"),
    ({"curriculum": "nope", "learners": ["u1"]}, "curriculum"),
    ({"curriculum": "demo", "learners": ["u1"], "candidates": ["c1"]}, "candidates"),
    ({"curriculum": "demo", "learners": ["u1"], "at": "2026-01-05T09:00:00"}, "at"),
])
def test_a_wrong_batch_is_400_naming_the_field(api_client, demo, body, field):
    response = post(api_client, body)
    assert response.status_code == 400
    assert field in [f["field"] for f in response.json()["error"]["fields"]]


def test_the_largest_batch_is_answered(api_client, demo, make_real_policy):
    promote_policy(policy=make_real_policy(demo, seed=2), reason="test")
    record_reviews(items=practise("u5", 5))
    learners = [f"u{i}" for i in range(MAX_BATCH_LEARNERS)]
    results = post(api_client, {"curriculum": "demo", "learners": learners}).json()["results"]
    assert len(results) == MAX_BATCH_LEARNERS and all(r["strategy"] == "policy" for r in results)
    assert results[5]["learner"] == "u5" and results[5]["scores"] != results[4]["scores"]


@pytest.fixture
def rate(throttle_rate):
    return throttle_rate("5/min")


def test_the_rate_limit_counts_learners_not_calls(api_client, demo, rate):
    assert post(api_client, {"curriculum": "demo", "learners": ["a", "b", "c"]}).status_code == 200
    refused = post(api_client, {"curriculum": "demo", "learners": ["a", "b", "c"]})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    # the refused batch used nothing: two learners are left
    assert post(api_client, {"curriculum": "demo", "learners": ["a", "b"]}).status_code == 200
    assert post(api_client, {"curriculum": "demo", "learners": ["a"]}).status_code == 429


def test_a_batch_larger_than_the_budget_uses_all_of_it(api_client, demo, rate):
    assert post(api_client, {"curriculum": "demo", "learners": [f"u{i}" for i in range(8)]}).status_code == 200
    response = api_client.post("/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}, format="json")
    assert response.status_code == 429


def test_a_list_longer_than_the_batch_limit_is_a_400_that_uses_one_unit(api_client, demo, rate):
    # a newcomer's 50,000 learners used 50,000 units of 60,000 for a 400; 70,000 was a 429 before its 400
    from curriculum.serving import MAX_BATCH_LEARNERS

    for size in (MAX_BATCH_LEARNERS + 1, 5 * MAX_BATCH_LEARNERS):  # both past the budget of 5
        response = post(api_client, {"curriculum": "demo", "learners": [f"u{i}" for i in range(size)]})
        assert response.status_code == 400, response.content
        assert f"expected at most {MAX_BATCH_LEARNERS} items" in response.json()["error"]["message"]
    # two units used: three learners still fit
    assert post(api_client, {"curriculum": "demo", "learners": ["a", "b", "c"]}).status_code == 200
    assert post(api_client, {"curriculum": "demo", "learners": ["a"]}).status_code == 429


def test_a_batch_over_the_process_limit_is_refused_at_once_without_using_the_budget(api_client, demo, rate, caplog):
    from curriculum.api.concurrency import batch_requests

    assert batch_requests.try_acquire()  # another thread of this process is answering a batch
    try:
        with caplog.at_level("INFO", logger="django.request"):
            refused = post(api_client, {"curriculum": "demo", "learners": ["a", "b", "c"]})
    finally:
        batch_requests.release()
    # a shed is the server working as configured: one WARNING, not Django's ERROR for a 5xx
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "django.request"]
    assert logged == [("WARNING", f"Batch request shed (API_BATCH_CONCURRENCY 1, API_BATCH_QUEUE 0): {URL}")]
    assert refused.status_code == 503 and refused["Retry-After"] == "1"
    assert "API_BATCH_CONCURRENCY" in refused.json()["error"]["message"] and refused.json()["error"]["fields"] == []
    # the refused batch used none of the budget (5 a minute) and gave its slot back: 5 learners are answered
    assert post(api_client, {"curriculum": "demo", "learners": ["a", "b", "c", "d", "e"]}).status_code == 200
    assert batch_requests.held == 0


@pytest.mark.parametrize("body, status", [
    ({"curriculum": "demo", "learners": ["a"]}, 200),
    ({"curriculum": "nope", "learners": ["a"]}, 400),  # raised inside the view
    ({"curriculum": "demo"}, 400),
])
def test_the_slot_is_given_back_however_the_request_ends(api_client, demo, body, status):
    from curriculum.api.concurrency import batch_requests

    assert post(api_client, body).status_code == status
    assert batch_requests.held == 0
    assert post(api_client, {"curriculum": "demo", "learners": ["a"]}).status_code == 200


def test_the_limit_holds_across_threads_and_follows_the_setting(transactional_db, demo, settings, django_user_model):
    """Real threads through the whole stack, each waiting inside serving until all have arrived or were refused:
    at most API_BATCH_CONCURRENCY answer at once, the others get 503 at once."""
    import threading
    from unittest import mock

    from django.db import connections
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from curriculum import serving

    settings.API_BATCH_CONCURRENCY = 2
    user = django_user_model.objects.create_user("batch-app")
    token = Token.objects.create(user=user)
    arrived, release = threading.Barrier(3), threading.Event()
    real = serving.recommend_batch

    def slow(**kwargs):
        arrived.wait(timeout=10)  # the two admitted requests and the test's thread
        release.wait(timeout=10)
        return real(**kwargs)

    statuses = []

    def ask():
        client = APIClient(HTTP_AUTHORIZATION=f"Token {token.key}")
        statuses.append(post(client, {"curriculum": "demo", "learners": ["a"]}).status_code)

    def ask_in_thread():
        try:
            ask()
        finally:
            connections.close_all()  # this thread's own connection

    with mock.patch.object(serving, "recommend_batch", side_effect=slow):
        threads = [threading.Thread(target=ask_in_thread) for _ in range(2)]
        for thread in threads:
            thread.start()
        arrived.wait(timeout=10)  # both admitted requests are inside serving now
        ask()  # a third, in this thread: over the limit
        assert statuses == [503]
        release.set()
        for thread in threads:
            thread.join(timeout=10)
    assert sorted(statuses) == [200, 200, 503]


def test_the_batch_endpoint_is_in_the_openapi_schema(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/recommendations/batch"]["post"]
    assert operation["operationId"] == "recommend_batch"
    components = schema["components"]["schemas"]
    learners = components["BatchRecommendationRequest"]["properties"]["learners"]
    assert learners["maxItems"] == MAX_BATCH_LEARNERS and learners["minItems"] == 1
    assert {"BatchRecommendation", "BatchLearnerError", "BatchResult"} <= set(components)
    assert {"learner", "concept", "scores", "policy", "strategy"} <= set(components["BatchRecommendation"]["properties"])


def test_a_policy_with_local_attention_steps_from_cached_histories_as_the_full_forward_answers(
        api_client, demo, make_real_policy, monkeypatch):
    """The per-step path (HistoryStepCache): first ask prefilled, asked again a hit, one review later extended by
    a step, another version never from the old one's entries; each time what the full forward answers."""
    from curriculum import serving

    monkeypatch.setattr(serving, "_LEARNERS_PER_CALL", 2)  # the 3 known learners in two calls
    promote_policy(policy=make_real_policy(demo, seed=3), reason="test")
    counts = {"u1": 1, "u3": 3, "u7": 7}
    for learner, count in counts.items():
        record_reviews(items=practise(learner, count))
    learners = [*counts, "never-seen"]

    def ask(cached: bool, at: str = AT) -> list[dict]:
        with monkeypatch.context() as patch:
            if not cached:
                patch.setattr(serving, "_step_cache", lambda: None)
            response = post(api_client, {"curriculum": "demo", "learners": learners, "at": at})
        assert response.status_code == 200
        return response.json()["results"]

    def assert_same(got: list[dict], want: list[dict]) -> None:
        for a, b in zip(got, want):
            assert {k: v for k, v in a.items() if k not in ("scores", "recommendation_id")} == \
                   {k: v for k, v in b.items() if k not in ("scores", "recommendation_id")}
            assert a["scores"] == pytest.approx(b["scores"], abs=2e-6)

    serving.clear_caches()
    cache = serving._step_cache()
    assert_same(ask(True), ask(False))
    assert (cache.misses, cache.hits, cache.steps) == (3, 0, 0)
    later = (T0 + dt.timedelta(days=5)).isoformat()
    assert_same(ask(True, later), ask(False, later))
    assert (cache.misses, cache.hits, cache.steps) == (3, 3, 0)
    record_reviews(items=[{"curriculum": "demo", "learner": learner, "concept": "c2", "correct": True,
                           "reviewed_at": (T0 + dt.timedelta(days=2)).isoformat()} for learner in ("u3", "u7")])
    assert_same(ask(True), ask(False))
    assert (cache.misses, cache.hits, cache.steps) == (3, 4, 2)
    promote_policy(policy=make_real_policy(demo, seed=4), reason="test")
    assert_same(ask(True), ask(False))
    assert (cache.misses, cache.hits, cache.steps) == (6, 4, 2)


def test_states_of_another_encoding_are_rebuilt_together_as_the_stored_ones_answer(
        api_client, demo, make_real_policy, django_assert_max_num_queries):
    """After a promotion and before the worker re-encodes the stored states, the batch rebuilds them from the
    histories read together (not a query per learner), and answers as it does once they are re-encoded."""
    from curriculum.learner_state_rebuild import reencode_states

    learners = [f"u{i}" for i in range(12)]
    for i, learner in enumerate(learners):
        record_reviews(items=practise(learner, 2 + i % 5))  # stored in the default encoding: no version active
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")  # context 4: another encoding
    body = {"curriculum": "demo", "learners": [*learners, "never-seen"], "at": AT}
    with django_assert_max_num_queries(12):  # a query per learner would be 20 (2: the log's savepoint)
        rebuilt = post(api_client, body).json()["results"]
    reencode_states(curriculum_id=demo.pk)
    stored = post(api_client, body).json()["results"]
    for a, b in zip(rebuilt, stored):
        assert (a["learner"], a["concept"], a["policy"]) == (b["learner"], b["concept"], b["policy"])
        assert a["scores"] == pytest.approx(b["scores"], abs=2e-6)


def test_states_stored_before_their_history_had_a_column_are_served_alike_then_moved(api_client, demo,
                                                                                     make_real_policy):
    """A LearnerState row written before `history_states` existed (the history's states base64 inside `data`, the
    column NULL) is answered exactly as one in today's form, by both endpoints; its next review stores it anew."""
    from curriculum.models import LearnerState
    from curriculum.selectors import serving_spec

    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    for learner, count in (("u3", 3), ("u7", 7)):
        record_reviews(items=practise(learner, count))
    body = {"curriculum": "demo", "learners": ["u3", "u7"], "at": AT}
    today = post(api_client, body).json()["results"]
    rows = list(LearnerState.objects.order_by("learner_id"))
    assert all(row.history_states and "states" not in row.data["state"]["history"] for row in rows)
    spec = serving_spec(curriculum_id=demo.id)
    for row in rows:
        whole = spec.dump(spec.load(row.data, row.history_states), last_review=tuple(row.data["last_review"]))
        assert whole["state"]["history"]["states"]
        LearnerState.objects.filter(pk=row.pk).update(data=whole, history_states=None)
    before = post(api_client, body).json()["results"]
    drop = ("recommendation_id",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in before] == \
           [{k: v for k, v in r.items() if k not in drop} for r in today]
    # the single endpoint computes one learner alone (another summation order than the batch's): scores to 2e-6
    alone = {k: v for k, v in single(api_client, "u7").items() if k not in drop}
    assert alone.pop("scores") == pytest.approx(today[1]["scores"], abs=2e-6)
    assert alone == {k: v for k, v in today[1].items() if k not in (*drop, "learner", "scores")}
    record_reviews(items=[{**practise("u7", 8)[-1]}])
    row = LearnerState.objects.get(learner__external_id="u7")
    assert row.review_count == 8 and row.history_states and "states" not in row.data["state"]["history"]
