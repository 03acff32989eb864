"""Properties of importing: the order of a file's rows does not matter, and a second import of reviews already
stored (the same file, another format, or the API) adds nothing."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from curriculum.models import Curriculum, Learner, ReviewLog
from curriculum.reviews.importers.service import import_review_file
from curriculum.reviews.store import record_reviews

EPOCH_MS = 1_700_000_000_000
# (card, ms after EPOCH_MS, grade): a card's reviews at distinct times, as one learner's history is
reviews_st = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10**9), st.integers(1, 4)), min_size=1, max_size=25,
    unique_by=lambda r: (r[0], r[1]),
)


def fsrs(rows) -> bytes:
    body = "".join(f"{card},{EPOCH_MS + ms},{grade},100\n" for card, ms, grade in rows)
    return ("card_id,review_time,review_rating,review_duration\n" + body).encode()


def anki(rows) -> bytes:
    body = "".join(f"{EPOCH_MS + ms},{card},-1,{grade},1,0,2500,100,1\n" for card, ms, grade in rows)
    return ("id,cid,usn,ease,ivl,lastIvl,factor,time,type\n" + body).encode()


def stored() -> set:
    return set(ReviewLog.objects.values_list("learner__external_id", "concept__key", "reviewed_at", "correct", "grade"))


def fresh() -> None:
    ReviewLog.objects.all().delete()
    Learner.objects.all().delete()
    Curriculum.objects.filter(key="logs").delete()


def load(data: bytes, name: str):
    return import_review_file(fileobj=io.BytesIO(data), filename=name, curriculum_key="logs", learner="ana", batch_size=4)


@pytest.mark.django_db
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=reviews_st, order=st.randoms(use_true_random=False))
def test_importing_is_insensitive_to_the_order_of_rows(rows, order):
    fresh()
    load(fsrs(rows), "a.csv")
    expected = stored()
    shuffled = list(rows)
    order.shuffle(shuffled)
    fresh()

    load(fsrs(shuffled), "b.csv")

    assert stored() == expected and len(expected) == len(rows)


@pytest.mark.django_db
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=reviews_st, second=st.sampled_from(["same file", "anki", "api"]))
def test_a_second_import_by_any_route_adds_nothing(rows, second):
    fresh()
    load(fsrs(rows), "first.csv")
    before = stored()

    if second == "same file":
        result = load(fsrs(rows), "first.csv")
        created = result.created
    elif second == "anki":
        result = load(anki(rows), "revlog.csv")
        created = result.created
    else:
        at = lambda ms: (dt.datetime.fromtimestamp(EPOCH_MS / 1000, dt.timezone.utc) + dt.timedelta(milliseconds=ms))
        created = record_reviews(items=[
            {"curriculum": "logs", "learner": "ana", "concept": str(card), "correct": grade > 1, "grade": grade,
             "reviewed_at": at(ms).isoformat()} for card, ms, grade in rows
        ]).created

    assert created == 0 and stored() == before
