"""Benchmark: synthetic-generation write throughput into PostgreSQL, binary COPY beside bulk_create (same run).

    DATABASE_URL=postgres://user@host:5432/db .venv/bin/python bench/ingest.py [--users 2000] [--interactions 100]

Writes into the database DATABASE_URL names (migrated), under a `bench-ingest` curriculum, and deletes what it
wrote at the end. "insert" is learners + reviews + commit (the FK checks run at commit); "job" is a whole
synthetic generation job (simulation included) as a worker runs it.
"""
from __future__ import annotations

import argparse
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

import numpy as np  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from curriculum.models import Concept, Learner, ReviewLog  # noqa: E402
from curriculum.services import ensure_curriculum  # noqa: E402
from curriculum.reviews import bulk  # noqa: E402
from training import jobs  # noqa: E402
from training.models import SyntheticGenerationJob  # noqa: E402
from training.rl.simulator import generate_logs  # noqa: E402

PREFIX = "bench-ingest"


def insert_once(*, curriculum, logs, concept_ids: np.ndarray, users: int, method: str, check_keys_once: bool) -> float:
    tag = f"{PREFIX}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    with transaction.atomic():
        learners = bulk.create_learners(external_ids=[f"{tag}-u{i}" for i in range(users)])
        bulk.write_reviews(
            curriculum_id=curriculum.pk, learner_ids=learners[logs.learner], concept_ids=concept_ids[logs.concept],
            t=logs.t, correct=logs.correct, grade=logs.grade, response_time_ms=logs.response_time_ms,
            source=ReviewLog.Source.SYNTHETIC, batch=tag, method=method, check_keys_once=check_keys_once,
        )
    return time.perf_counter() - started


def clean_up(curriculum) -> None:
    # Raw deletes: the ORM's cascade collection would hold every row in memory.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ReviewLog._meta.db_table} WHERE curriculum_id = %s", [curriculum.pk])
        cursor.execute(f"DELETE FROM {Learner._meta.db_table} WHERE external_id LIKE %s", [f"{PREFIX}-%"])
        jobs = SyntheticGenerationJob.objects.filter(curriculum=curriculum)
        for job in jobs:
            cursor.execute(f"DELETE FROM {Learner._meta.db_table} WHERE external_id LIKE %s", [f"syn{job.pk}-u%"])
    jobs.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--interactions", type=int, default=100)
    parser.add_argument("--concepts", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit(f"bench/ingest.py measures PostgreSQL; DATABASE_URL points at {connection.vendor}")

    curriculum = ensure_curriculum(key=PREFIX, name="ingest benchmark", concept_keys=[f"c{i:02d}" for i in range(args.concepts)])
    clean_up(curriculum)
    concept_ids = np.array(Concept.objects.filter(curriculum=curriculum).order_by("position").values_list("id", flat=True))
    rows = args.users * args.interactions
    started = time.perf_counter()
    logs = generate_logs(num_users=args.users, interactions=args.interactions, num_concepts=args.concepts, seed=1)
    simulate_s = time.perf_counter() - started

    variants = {  # label -> (method, check_keys_once)
        "binary COPY, keys checked once per value": ("copy", True),
        "binary COPY, PostgreSQL's per-row FK triggers": ("copy", False),
        "bulk_create(batch_size=5000)": ("bulk_create", True),
    }
    results: dict[str, list[float]] = {label: [] for label in variants}
    try:
        for _ in range(args.repeats):  # interleaved, so all see the same machine load
            for label, (method, once) in variants.items():
                results[label].append(insert_once(curriculum=curriculum, logs=logs, concept_ids=concept_ids,
                                                  users=args.users, method=method, check_keys_once=once))
        job = SyntheticGenerationJob.objects.create(curriculum=curriculum, num_users=args.users,
                                                    interactions=args.interactions, seed=2)
        started = time.perf_counter()
        jobs.run_synthetic_generation(job_id=job.pk, worker="bench")
        job_s = time.perf_counter() - started
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
    finally:
        clean_up(curriculum)

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    fast = bulk.can_check_keys_once()
    print(f"\nReviewLog write throughput, PostgreSQL {server}, {rows:,} rows per run "
          f"({args.users:,} learners x {args.interactions} reviews, {args.concepts} concepts), {os.cpu_count()} CPUs; "
          f"this role {'may' if fast else 'may NOT'} skip the per-row triggers\n")
    print("| method | what | runs | median s | best s | median rows/s | best rows/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, times in results.items():
        med, best = statistics.median(times), min(times)
        print(f"| {label} | insert | {len(times)} | {med:.2f} | {best:.2f} | {rows / med:,.0f} | {rows / best:,.0f} |")
    print(f"| binary COPY, keys checked once per value | whole job (simulate {simulate_s:.2f} s + write) | 1 | {job_s:.2f} | {job_s:.2f} "
          f"| {rows / job_s:,.0f} | {rows / job_s:,.0f} |")


if __name__ == "__main__":
    main()
