"""Benchmark: the review log's admin pages on a large table, ReviewLogAdmin beside Django's defaults (same run).

    DATABASE_URL=postgres://user@host:5432/db .venv/bin/python bench/review_admin.py [--rows 10000000] [--repeats 5]

Fills a `bench-review-admin` curriculum with --rows synthetic reviews (binary COPY, curriculum/reviews/bulk.py;
kept between runs of the same size, so a second run measures at once; --clean deletes them), ANALYZEs the table,
then renders each page --repeats times, interleaved, as a staff user's GET would (the ModelAdmin's changelist view,
rendered), counting the SQL queries. "defaults" is a ModelAdmin with the same columns and Django's defaults: a date
hierarchy on reviewed_at, LIKE search, the default Paginator (COUNT(*) of the result), no select_related.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from curriculum.admin import ReviewLogAdmin  # noqa: E402
from curriculum.models import Concept, Learner, ReviewLog  # noqa: E402
from curriculum.reviews import bulk  # noqa: E402
from curriculum.services import ensure_curriculum  # noqa: E402

PREFIX = "bench-review-admin"
LEARNERS = 10_000
CONCEPTS = 200
BLOCK = 1_000_000  # rows written per transaction


class DefaultsReviewLogAdmin(admin.ModelAdmin):
    """The same columns with Django's defaults, as the page was before it was made for large tables."""

    list_display = ReviewLogAdmin.list_display
    list_filter = ("source", "correct", "curriculum")
    date_hierarchy = "reviewed_at"
    search_fields = ("learner__external_id", "concept__key", "batch")

    @admin.display(description="concept")
    def concept_key(self, obj: ReviewLog) -> str:
        return obj.concept.key


def fill(*, curriculum, rows: int) -> float:
    """Write reviews until the curriculum holds `rows`; returns the seconds spent."""
    have = ReviewLog.objects.filter(curriculum=curriculum).count()
    if have == rows:
        return 0.0
    clean_up(curriculum)
    started = time.perf_counter()
    concept_ids = np.array(Concept.objects.filter(curriculum=curriculum).order_by("position").values_list("id", flat=True))
    learners = bulk.create_learners(external_ids=[f"{PREFIX}-u{i}" for i in range(LEARNERS)])
    rng = np.random.default_rng(1)
    now = time.time()
    written = 0
    while written < rows:
        n = min(BLOCK, rows - written)
        learner = rng.integers(0, LEARNERS, n)
        t = np.sort(rng.uniform(now - 3 * 365 * 86400, now, n))  # three years of history up to now
        correct = rng.random(n) < 0.8
        grade = np.where(correct, rng.integers(2, 5, n), 1)  # 1 means wrong, 2-4 right
        bulk.write_reviews(
            curriculum_id=curriculum.pk, learner_ids=np.asarray(learners)[learner],
            concept_ids=concept_ids[rng.integers(0, CONCEPTS, n)], t=t, correct=correct,
            grade=grade, response_time_ms=rng.integers(500, 20_000, n),
            source=ReviewLog.Source.SYNTHETIC, batch=f"{PREFIX}-{written // BLOCK}",
        )
        written += n
        print(f"  wrote {written:,} / {rows:,} rows", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ReviewLog._meta.db_table}")
    return time.perf_counter() - started


def clean_up(curriculum) -> None:
    # Raw deletes: the ORM's cascade collection would hold every row in memory.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ReviewLog._meta.db_table} WHERE curriculum_id = %s", [curriculum.pk])
        cursor.execute(f"DELETE FROM {Learner._meta.db_table} WHERE external_id LIKE %s", [f"{PREFIX}-%"])


def render(model_admin: admin.ModelAdmin, request) -> tuple[float, int, int]:
    """(seconds, queries, status) of one changelist page, rendered."""
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = model_admin.changelist_view(request)
        response.render()
        seconds = time.perf_counter() - started
    return seconds, len(queries), response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clean", action="store_true", help="delete the benchmark's rows and stop")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit(f"bench/review_admin.py measures PostgreSQL; DATABASE_URL points at {connection.vendor}")
    if args.rows < 1 or args.repeats < 1:
        sys.exit("--rows and --repeats must be at least 1")

    curriculum = ensure_curriculum(key=PREFIX, name="review admin benchmark",
                                   concept_keys=[f"c{i:03d}" for i in range(CONCEPTS)])
    if args.clean:
        clean_up(curriculum)
        return
    fill_s = fill(curriculum=curriculum, rows=args.rows)

    user = get_user_model().objects.filter(is_superuser=True).first() or get_user_model()(
        username="bench", is_staff=True, is_superuser=True)
    site = admin.AdminSite(name="bench")
    admins = {"ReviewLogAdmin": ReviewLogAdmin(ReviewLog, site),
              "defaults": DefaultsReviewLogAdmin(ReviewLog, site)}
    pages = {  # label -> query string
        "first page": {},
        "page 50": {"p": "50"},
        "source = synthetic": {"source__exact": "synthetic"},
        "one learner (search)": {"q": f"{PREFIX}-u42"},
    }
    factory = RequestFactory()
    results: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load and cache
        for page, params in pages.items():
            for name, model_admin in admins.items():
                request = factory.get("/admin/curriculum/reviewlog/", params)
                request.user = user
                results.setdefault((page, name), []).append(render(model_admin, request))

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    print(f"\nReview log admin changelist, PostgreSQL {server}, {args.rows:,} reviews "
          f"({LEARNERS:,} learners, {CONCEPTS} concepts; fill {fill_s:.0f} s), {os.cpu_count()} CPUs, "
          f"{args.repeats} renders each\n")
    print("| page | admin | median s | min s | max s | queries | status | defaults / ReviewLogAdmin |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for page in pages:
        ours = statistics.median(s for s, _, _ in results[(page, "ReviewLogAdmin")])
        for name in admins:
            runs = results[(page, name)]
            times = [s for s, _, _ in runs]
            med = statistics.median(times)
            ratio = f"{med / ours:.1f}x" if name == "defaults" else ""
            print(f"| {page} | {name} | {med:.3f} | {min(times):.3f} | {max(times):.3f} | {runs[-1][1]} "
                  f"| {runs[-1][2]} | {ratio} |")


if __name__ == "__main__":
    # Pages are rendered without collectstatic: static files named as they are, not by a manifest's hashed names.
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
        main()
