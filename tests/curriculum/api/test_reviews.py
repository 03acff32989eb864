"""POST /api/v1/reviews: one review or a batch, all or nothing, duplicates, and the error shape for odd bodies."""
import datetime as dt
import json

import pytest

from curriculum.models import Learner, LearnerState, ReviewLog

URL = "/api/v1/reviews"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def review(i=0, **overrides):
    item = {"curriculum": "demo", "learner": "u1", "concept": f"c{i % 5}", "correct": True, "grade": 3,
            "reviewed_at": (T0 + dt.timedelta(minutes=i)).isoformat(), "response_time_ms": 900}
    item.update(overrides)
    return item


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def post(client, body, **kwargs):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **kwargs)


def assert_error_shape(response, status=400):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], list)
    return error


def test_one_review_is_stored_and_folded_into_the_learner_state(api_client, demo):
    response = post(api_client, review(0))
    assert response.status_code == 201
    assert response.json() == {"created": 1, "duplicates": 0}
    state = LearnerState.objects.get(learner__external_id="u1", curriculum=demo)
    assert state.review_count == 1 and state.newest_review_at == T0


def test_a_list_is_stored_in_one_go(api_client, demo):
    response = post(api_client, [review(i) for i in range(10)])
    assert response.status_code == 201
    assert response.json() == {"created": 10, "duplicates": 0}
    assert ReviewLog.objects.count() == 10
    assert LearnerState.objects.get(learner__external_id="u1").review_count == 10


def test_an_empty_list_stores_nothing(api_client, demo):
    assert post(api_client, []).json() == {"created": 0, "duplicates": 0}


def test_idempotency_keys_already_stored_count_as_duplicates(api_client, demo):
    post(api_client, [review(0, idempotency_key="k0"), review(1, idempotency_key="k1")])
    response = post(api_client, [review(0, idempotency_key="k0"), review(2, idempotency_key="k2"),
                                 review(2, idempotency_key="k2")])
    assert response.status_code == 201
    assert response.json() == {"created": 1, "duplicates": 2}
    assert ReviewLog.objects.count() == 3
    assert LearnerState.objects.get(learner__external_id="u1").review_count == 3


def test_a_batch_with_one_bad_item_stores_nothing_and_names_the_item_and_field(api_client, demo):
    response = post(api_client, [review(0), review(1), review(2, concept="nope"), review(3, reviewed_at="2026-01-05T10:00:00")])
    error = assert_error_shape(response)
    assert error["fields"] == [
        {"index": 2, "field": "concept", "message": "unknown concept 'nope' in curriculum 'demo'"},
        {"index": 3, "field": "reviewed_at", "message": "the date-time has no zone; add one, e.g. 'Z' or '+02:00'"},
    ]
    assert error["message"].startswith("item 2: concept: unknown concept 'nope'") and "(and 1 more)" in error["message"]
    assert ReviewLog.objects.count() == 0 and Learner.objects.count() == 0 and LearnerState.objects.count() == 0


def test_a_single_bad_review_names_the_field_without_an_index(api_client, demo):
    error = assert_error_shape(post(api_client, review(0, grade=7)))
    assert error["fields"] == [{"field": "grade", "message": "expected an integer from 1 to 4"}]


@pytest.mark.parametrize("body, field", [
    (review(0, correct="yes"), "correct"),
    (review(0, learner=["u1"]), "learner"),
    (review(0, learner={"id": {"nested": [1, 2, {"x": None}]}}), "learner"),
    (review(0, curriculum={"key": "demo"}), "curriculum"),
    (review(0, concept=17), "concept"),
    (review(0, reviewed_at=1767603600), "reviewed_at"),
    (review(0, reviewed_at="2026-01-05T09:00:00"), "reviewed_at"),
    (review(0, reviewed_at="2026-02-30T09:00:00Z"), "reviewed_at"),
    (review(0, reviewed_at={"date": "2026-01-05"}), "reviewed_at"),
    (review(0, reviewed_at="0001-01-01T00:00:00+01:00"), "reviewed_at"),  # before year 1 in UTC
    (review(0, reviewed_at="9999-12-31T23:59:59-01:00"), "reviewed_at"),  # after year 9999 in UTC
    (review(0, grade=2.5), "grade"),
    (review(0, grade=True), "grade"),
    (review(0, response_time_ms=-1), "response_time_ms"),
    (review(0, response_time_ms=10**40), "response_time_ms"),
    (review(0, idempotency_key=""), "idempotency_key"),
    (review(0, idempotency_key="k" * 201), "idempotency_key"),
    (review(0, learner="u" * 201), "learner"),
    (review(0, extra={"junk": [1, [2, [3]]]}), "extra"),
    ({}, "curriculum"),
    ([review(0), "not an object"], "item"),
    ([review(0), None], "item"),
    ([[review(0)]], "item"),
    ([review(i) for i in range(1001)], "items"),
])
def test_odd_bodies_are_400_naming_the_field_and_store_nothing(api_client, demo, body, field):
    error = assert_error_shape(post(api_client, body))
    assert field in [f["field"] for f in error["fields"]]
    assert ReviewLog.objects.count() == 0


@pytest.mark.parametrize("value", [-1, 2**31, 99_999_999_999])
def test_a_response_time_out_of_range_names_the_range(api_client, demo, value):
    error = assert_error_shape(post(api_client, review(0, response_time_ms=value)))
    assert error["fields"] == [{"field": "response_time_ms",
                                "message": "expected an integer number of milliseconds from 0 to 2,147,483,647"}]


@pytest.mark.parametrize("raw", [
    b"{not json", b'{"curriculum": "demo",}', b"", b"null", b"42", b'"a string"', b"true", b"\xff\xfe\x00garbage",
    b'{"curriculum": NaN}', b"[" * 100_000 + b"]" * 100_000, json.dumps(review(0, learner="u\x00")).encode(),
    json.dumps(review(0, curriculum="demo\udfff")).encode(), b'{"learner": 1' + b"0" * 5000 + b"}",
])
def test_malformed_or_non_object_bodies_are_400(api_client, demo, raw):
    response = api_client.post(URL, data=raw, content_type="application/json")
    error = assert_error_shape(response)
    assert error["fields"] and error["fields"][0]["field"] in {"body", "curriculum"}
    assert ReviewLog.objects.count() == 0


def test_a_number_too_long_to_read_is_named_as_such(api_client, demo):
    error = assert_error_shape(api_client.post(URL, data=b'{"learner": 1' + b"0" * 5000 + b"}",
                                               content_type="application/json"))
    assert error["message"] == "malformed JSON: a number of 5,001 digits (at most 4,300)"


def test_a_body_larger_than_the_limit_is_400(api_client, demo):
    from curriculum.api.parsers import MAX_BODY_BYTES

    raw = json.dumps([review(0, learner="x" * 1000)] * (MAX_BODY_BYTES // 1000 + 10)).encode()
    error = assert_error_shape(api_client.post(URL, data=raw, content_type="application/json"))
    assert "larger than" in error["message"]


def test_a_body_that_is_not_sent_as_json_is_415_naming_the_content_type(api_client, demo):
    # curl -d sends application/x-www-form-urlencoded unless told otherwise
    response = api_client.post(URL, data=json.dumps(review(0)), content_type="application/x-www-form-urlencoded")
    error = assert_error_shape(response, 415)
    assert error["fields"][0]["field"] == "Content-Type" and "application/json" in error["message"]
    assert ReviewLog.objects.count() == 0
    for media_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        assert api_client.post(URL, data=json.dumps(review(0)), content_type=media_type).status_code == 201


def test_without_a_token_it_is_401_with_www_authenticate(client, demo):
    response = post(client, review(0))
    assert_error_shape(response, 401)
    assert response["WWW-Authenticate"] == "Token"
    assert ReviewLog.objects.count() == 0


def test_a_wrong_token_is_401(client, demo):
    response = post(client, review(0), HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert_error_shape(response, 401)
    assert response["WWW-Authenticate"] == "Token"


def test_get_is_405_in_the_error_shape(api_client, demo):
    assert_error_shape(api_client.get(URL), 405)
