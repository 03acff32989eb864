"""The batch recommendation's lookup (curriculum.selectors.serving_batch_lookup): on PostgreSQL its learners' rows
come in binary format (history states as bytes, not hexadecimal text) through Django's cursor wrapper, so the web
process's execute wrappers still see the query; the rows are what the ORM stores."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from curriculum import selectors
from curriculum.models import LearnerState
from curriculum.reviews.store import record_reviews

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def test_the_batch_lookup_reads_what_the_orm_stores_through_the_execute_wrappers(make_curriculum):
    make_curriculum("demo", concepts=5)
    record_reviews(items=[{"curriculum": "demo", "learner": f"u{n}", "concept": f"c{i % 5}", "correct": i % 3 != 0,
                           "reviewed_at": (T0 + dt.timedelta(hours=i)).isoformat()}
                          for n in range(3) for i in range(4 + n)])
    seen = []

    def watch(execute, sql, params, many, context):
        seen.append((sql, getattr(context["cursor"].cursor, "format", None)))
        return execute(sql, params, many, context)

    from django.test.utils import CaptureQueriesContext

    with connection.execute_wrapper(watch), CaptureQueriesContext(connection) as logged:
        found = selectors.serving_batch_lookup(curriculum_key="demo", learner_external_ids=["u0", "u2", "new", "u0"])
    # in the query log too (DEBUG, the tests' query counts): a reviewer found it missing there
    assert any("l.external_id" in query["sql"] for query in logged.captured_queries)
    assert set(found.learners) == {"u0", "u2"}
    formats = [fmt for sql, fmt in seen if "l.external_id" in sql]  # the learners' query too, not only the curriculum's
    assert formats
    if connection.vendor == "postgresql":
        import psycopg

        assert formats == [psycopg.pq.Format.BINARY]
    for external_id, (learner_id, data, history) in found.learners.items():
        stored = LearnerState.objects.get(learner__external_id=external_id)
        assert learner_id == stored.learner_id and data == stored.data
        assert bytes(history) == bytes(stored.history_states) and len(bytes(history)) > 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="binary results are PostgreSQL's")
def test_on_postgresql_the_rows_come_in_binary_format_with_the_states_as_bytes():
    rows = selectors._binary_rows("SELECT %s::bytea, %s::jsonb::text, %s::int8",
                                  [b"\x00\xff" * 3000, '{"a": [1, 2]}', 7])
    assert rows == [(b"\x00\xff" * 3000, '{"a": [1, 2]}', 7)]
    with connection.cursor() as cursor:  # Django's own cursor still answers in text format afterwards
        cursor.execute("SELECT %s::int8", [8])
        assert cursor.fetchone() == (8,)
