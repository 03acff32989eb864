"""curriculum.reviews.store: record_reviews validates every item, stores all or none, counts duplicates."""
import datetime as dt

import pytest

from curriculum.models import Learner, ReviewLog
from curriculum.reviews import store
from curriculum.reviews.validation import ReviewValidationError

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def review(i=0, **overrides):
    item = {
        "curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True, "grade": 3,
        "reviewed_at": (T0 + dt.timedelta(minutes=i)).isoformat(), "response_time_ms": 1200,
    }
    item.update(overrides)
    return item


# ------------------------------------------------------------------------------------------ record_reviews
@pytest.mark.django_db
def test_record_reviews_stores_a_valid_batch(make_curriculum):
    make_curriculum()
    result = store.record_reviews(items=[review(0), review(1, concept="c1", correct=False, grade=1)])
    assert (result.created, result.duplicates) == (2, 0)
    assert ReviewLog.objects.count() == 2
    assert Learner.objects.filter(external_id="u1").exists()


@pytest.mark.django_db
def test_batch_with_one_bad_item_stores_nothing_and_names_item_and_field(make_curriculum):
    make_curriculum()
    with pytest.raises(ReviewValidationError) as info:
        store.record_reviews(items=[review(0), review(1), review(2, concept="nope")])
    assert ReviewLog.objects.count() == 0
    assert Learner.objects.count() == 0
    assert info.value.errors[0]["index"] == 2
    assert info.value.errors[0]["field"] == "concept"
    assert "item 2: concept" in str(info.value)
    assert "nope" in str(info.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"curriculum": "unknown"}, "curriculum"),
        ({"reviewed_at": "2026-01-05T09:00:00"}, "reviewed_at"),
        ({"reviewed_at": "yesterday"}, "reviewed_at"),
        ({"grade": 5}, "grade"),
        ({"grade": 1, "correct": True}, "grade"),
        ({"grade": 3, "correct": False}, "grade"),
        ({"correct": "yes"}, "correct"),
        ({"learner": ""}, "learner"),
        ({"response_time_ms": -5}, "response_time_ms"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_review_is_refused_naming_the_field(make_curriculum, overrides, field):
    make_curriculum()
    with pytest.raises(ReviewValidationError) as info:
        store.record_reviews(items=[review(0, **overrides)])
    assert info.value.errors[0]["field"] == field
    assert ReviewLog.objects.count() == 0


@pytest.mark.django_db
def test_timezone_aware_datetime_objects_are_accepted(make_curriculum):
    make_curriculum()
    result = store.record_reviews(items=[review(0, reviewed_at=T0)])
    assert result.created == 1


@pytest.mark.django_db
def test_repeated_idempotency_key_is_a_duplicate_not_stored_twice(make_curriculum):
    make_curriculum()
    first = store.record_reviews(items=[review(0, idempotency_key="k1")])
    again = store.record_reviews(items=[review(0, idempotency_key="k1"), review(1, idempotency_key="k2")])
    within = store.record_reviews(items=[review(2, idempotency_key="k3"), review(2, idempotency_key="k3")])
    assert (first.created, first.duplicates) == (1, 0)
    assert (again.created, again.duplicates) == (1, 1)
    assert (within.created, within.duplicates) == (1, 1)
    assert ReviewLog.objects.count() == 3


@pytest.mark.django_db
def test_batch_over_the_limit_is_refused(make_curriculum):
    make_curriculum()
    with pytest.raises(ReviewValidationError) as info:
        store.record_reviews(items=[review(i) for i in range(store.MAX_BATCH + 1)])
    assert "at most 1000" in str(info.value)
    assert ReviewLog.objects.count() == 0




# ------------------------------------------------------------------------------------- new learners in bulk
@pytest.mark.django_db
def test_a_batch_for_many_new_learners_takes_the_queries_of_one_for_a_few(make_curriculum):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from curriculum.models import LearnerState
    from tests.curriculum.test_learner_states import expected_data, stored

    make_curriculum()

    def queries(*, learners: int, tag: str) -> int:
        items = [review(i, learner=f"{tag}{i % learners}", concept=f"c{i % 5}") for i in range(300)]
        with CaptureQueriesContext(connection) as captured:
            assert store.record_reviews(items=items).created == 300
        return len(captured)

    few, many = queries(learners=3, tag="few-"), queries(learners=100, tag="many-")

    # not one query (or three) more per new learner; a bulk insert of more rows than the database takes in one
    # statement (SQLite: 999 parameters) is split, as the reviews' own insert is
    assert many == few
    states = LearnerState.objects.filter(learner__external_id__startswith="many-")
    assert states.count() == 100 and all(s.review_count == 3 and stored(s) == expected_data(s) for s in states)
    assert all(s.review_count == 100 and stored(s) == expected_data(s)
               for s in LearnerState.objects.filter(learner__external_id__startswith="few-"))
