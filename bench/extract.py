"""Benchmark: trajectory extraction of 1,000,000 ReviewLog rows (seconds and peak RSS), each stage in a fresh process.

    DATABASE_URL=postgres://user@host:5432/db .venv/bin/python bench/extract.py [--rows 1000000] [--concepts 20]
        [--stages memory,read,extract,job,train] [--train-steps N]

The first run writes the reviews (10,000 simulated learners x 100 by default) under a `bench-extract`
curriculum and keeps them for the next runs. Stages: "read" streams the rows as columnar chunks
(curriculum.reviews.reader.iter_review_chunks), "extract" builds the TrajectoryDataset (pipeline.build_dataset_from_reviews),
"job" is the whole extraction job as a worker runs it (extract, statistics, save the dataset to storage), "memory"
extracts a simulated log of the same size held in memory (no database: the encoder's own speed), "train" extracts
and trains one epoch (the pipeline's defaults, batch 64) in one process: its peak RSS is the whole path's
(``--train-steps N``: an epoch of N optimizer steps instead, for a bounded run; the table says which).
The curriculum is `bench-extract` (20 concepts) or `bench-extract-cN` (N concepts).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from curriculum.models import Concept, Curriculum, ReviewLog  # noqa: E402
from curriculum.services import ensure_curriculum  # noqa: E402

KEY = "bench-extract"
INTERACTIONS = 100
STAGES = ("memory", "read", "extract", "job", "train")


def curriculum_key(concepts: int) -> str:
    return KEY if concepts == 20 else f"{KEY}-c{concepts}"


def ensure_reviews(*, rows: int, concepts: int) -> Curriculum:
    from curriculum.reviews import bulk
    from training.rl.simulator import generate_logs

    key = curriculum_key(concepts)
    curriculum = ensure_curriculum(key=key, name="extraction benchmark", concept_keys=[f"c{i:02d}" for i in range(concepts)])
    have = ReviewLog.objects.filter(curriculum=curriculum).count()
    if have == rows:
        return curriculum
    if have:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {ReviewLog._meta.db_table} WHERE curriculum_id = %s", [curriculum.pk])
    users = rows // INTERACTIONS
    concept_ids = np.array(Concept.objects.filter(curriculum=curriculum).order_by("position").values_list("id", flat=True))
    started = time.perf_counter()
    for first in range(0, users, 2000):  # a cohort at a time keeps the simulator's memory small
        n = min(2000, users - first)
        logs = generate_logs(num_users=n, interactions=INTERACTIONS, num_concepts=concepts, seed=first)
        with transaction.atomic():
            learners = bulk.create_learners(external_ids=[f"{KEY}-{first + i}" for i in range(n)])
            bulk.write_reviews(
                curriculum_id=curriculum.pk, learner_ids=learners[logs.learner], concept_ids=concept_ids[logs.concept],
                t=logs.t, correct=logs.correct, grade=logs.grade, response_time_ms=logs.response_time_ms,
                source=ReviewLog.Source.SYNTHETIC, batch=KEY,
            )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ReviewLog._meta.db_table}")
    print(f"wrote {users * INTERACTIONS:,} reviews in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return curriculum


def run_stage(stage: str, *, rows: int, concepts: int, train_steps: int | None = None) -> dict:
    """In this (fresh) process: one stage, its wall time and the process's peak RSS."""
    from curriculum.reviews.reader import iter_review_chunks
    from training import jobs, pipeline
    from training.models import TrajectoryExtractionJob

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if stage == "memory":
        from training.rl.simulator import generate_logs
        from training.rl.trajectories import trajectories_from_columns

        logs = generate_logs(num_users=rows // INTERACTIONS, interactions=INTERACTIONS, num_concepts=concepts, seed=0)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        rows = len(trajectories_from_columns(logs, num_concepts=concepts).actions)
        return {"stage": stage, "rows": rows, "seconds": time.perf_counter() - started,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mib": rss_before / 1024}
    curriculum = Curriculum.objects.get(key=curriculum_key(concepts))
    started = time.perf_counter()
    if stage == "train":
        dataset = pipeline.build_dataset_from_reviews(curriculum=curriculum)
        rows = len(dataset.actions)
        extracted = time.perf_counter() - started
        config = pipeline.TRAIN_DEFAULTS if train_steps is None else replace(
            pipeline.TRAIN_DEFAULTS, windows_per_epoch=train_steps * 64)
        with tempfile.TemporaryDirectory() as out:
            outcome = pipeline.train_and_export(dataset=dataset, output_dir=out, epochs=1, batch_size=64, seed=42,
                                                no_cuda=True, train_config=config)
        steps = config.steps_per_epoch(num_steps=rows, context_length=int(outcome.config["context_length"]))
        return {"stage": f"train ({steps:,} steps)", "rows": rows, "seconds": time.perf_counter() - started,
                "extract_seconds": extracted, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mib": rss_before / 1024}
    elif stage == "read":
        rows = sum(len(chunk["learner"]) for chunk in iter_review_chunks(curriculum=curriculum))
    elif stage == "extract":
        rows = len(pipeline.build_dataset_from_reviews(curriculum=curriculum).actions)
    else:
        job = TrajectoryExtractionJob.objects.create(curriculum=curriculum)
        jobs.run_trajectory_extraction(job_id=job.pk, worker="bench")
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
        rows = job.rows_read
        job.delete()
    seconds = time.perf_counter() - started
    return {"stage": stage, "rows": rows, "seconds": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mib": rss_before / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concepts", type=int, default=20)
    parser.add_argument("--stages", default="memory,read,extract,job",
                        help=f"comma-separated, of {', '.join(STAGES)} (train: extract + one epoch, slow)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="train stage: optimizer steps in its one epoch (default: the whole epoch)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, rows=args.rows, concepts=args.concepts, train_steps=args.train_steps)))
        return
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {', '.join(unknown)} (expected some of {', '.join(STAGES)})")

    if set(stages) - {"memory"}:
        ensure_reviews(rows=args.rows, concepts=args.concepts)
    results = []
    with tempfile.TemporaryDirectory() as media:
        for stage in stages:
            env = {**os.environ, "MEDIA_ROOT": media}
            env.pop("ARTIFACT_STORAGE_BACKEND", None)
            steps = [] if args.train_steps is None else ["--train-steps", str(args.train_steps)]
            out = subprocess.run([sys.executable, __file__, "--stage", stage, "--rows", str(args.rows),
                                  "--concepts", str(args.concepts), *steps], env=env,
                                 check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    print(f"\nExtraction of {args.rows:,} ReviewLog rows ({args.rows // INTERACTIONS:,} learners x {INTERACTIONS}, "
          f"{args.concepts} concepts), {connection.vendor}, {os.cpu_count()} CPUs; each stage in a fresh process\n")
    print("| stage | rows | seconds | rows/s | peak RSS MiB | RSS at start MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['stage']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
              f"| {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} |")
        if "extract_seconds" in r:
            print(f"\n{r['stage']}: extraction {r['extract_seconds']:.1f} s, training "
                  f"{r['seconds'] - r['extract_seconds']:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
