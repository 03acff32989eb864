"""Benchmark: one review batch (the API's `record_reviews`) by the number of learners it brings; prints a Markdown table.

    [DATABASE_URL=postgres://postgres@127.0.0.1:5432/crl_bench] .venv/bin/python bench/review_batch.py \\
        [--reviews 1000] [--repeat 5]

Stores, in the database DATABASE_URL names (migrated), `--repeat` batches of `--reviews` reviews for each case: all of
them by a few learners (5, known after the first batch), or each by a new learner (the case a bulk migration of a
client's users sends), and reports the median time of `record_reviews` per batch and its queries. A `bench-batch-*`
curriculum is made and deleted with everything it holds at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from curriculum.models import Curriculum, Learner, LearnerState, ReviewLog  # noqa: E402
from curriculum.reviews.store import record_reviews  # noqa: E402
from curriculum.services import ensure_curriculum  # noqa: E402

CONCEPTS = 20


def batch(*, key: str, reviews: int, learners: list[str], start: dt.datetime) -> list[dict]:
    return [{"curriculum": key, "learner": learners[i % len(learners)], "concept": f"c{i % CONCEPTS:02d}",
             "correct": i % 4 != 0, "grade": 1 if i % 4 == 0 else 3,
             "reviewed_at": (start + dt.timedelta(seconds=i)).isoformat()} for i in range(reviews)]


def measure(*, key: str, reviews: int, repeat: int, new_learners: bool, tag: str) -> tuple[float, int]:
    """Median seconds of one batch and its queries (the last batch's)."""
    seconds, queries = [], 0
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    for r in range(repeat):
        learners = ([f"{tag}-new{r}-{i}" for i in range(reviews)] if new_learners else [f"{tag}-few-{i}" for i in range(5)])
        items = batch(key=key, reviews=reviews, learners=learners, start=start + dt.timedelta(days=r))
        counted = [0]

        def count(execute, sql, params, many, context):
            counted[0] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            began = time.perf_counter()
            record_reviews(items=items)
            seconds.append(time.perf_counter() - began)
        queries = counted[0]
    return statistics.median(seconds), queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reviews", type=int, default=1000, help="reviews per batch (the API takes up to 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="batches per case (the median is shown)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    tag = f"bench-batch-{uuid.uuid4().hex[:8]}"
    curriculum = ensure_curriculum(key=tag, concept_keys=[f"c{i:02d}" for i in range(CONCEPTS)])
    print(f"database {connection.vendor}; {args.reviews} reviews per batch, median of {args.repeat}; "
          f"{os.cpu_count()} CPUs\n")
    print("| batch | learners per batch | median s | queries |\n| --- | ---: | ---: | ---: |")
    try:
        record_reviews(items=batch(key=tag, reviews=5, learners=[f"{tag}-few-{i}" for i in range(5)],
                                   start=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60)))
        for label, new, learners in (("a few known learners", False, 5), ("each review a new learner", True, args.reviews)):
            median, queries = measure(key=tag, reviews=args.reviews, repeat=args.repeat, new_learners=new, tag=tag)
            print(f"| {label} | {learners} | {median:.3f} | {queries} |", flush=True)
    finally:
        LearnerState.objects.filter(curriculum=curriculum).delete()
        ReviewLog.objects.filter(curriculum=curriculum).delete()
        Learner.objects.filter(external_id__startswith=tag).delete()
        Curriculum.objects.filter(pk=curriculum.pk).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
