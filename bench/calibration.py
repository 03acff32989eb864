"""Calibration of the memory model on a real review log: import bench/data/fsrs-real-half.csv into a fresh
curriculum and print the report (srs-benchmark's scoring) as a Markdown table.

    python bench/calibration.py [--file PATH] [--curriculum KEY]

Uses the project's database (DATABASE_URL; SQLite in var/ by default); the curriculum is deleted first if it exists.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "bench" / "data" / "fsrs-real-half.csv"))
    parser.add_argument("--curriculum", default="bench-fsrs-real")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from curriculum.calibration import calibration_report
    from curriculum.reviews.importers.service import import_review_file
    from curriculum.management.commands.calibration_report import markdown_table
    from curriculum.models import Curriculum, ReviewLog

    call_command("migrate", verbosity=0)
    ReviewLog.objects.filter(curriculum__key=args.curriculum).delete()
    Curriculum.objects.filter(key=args.curriculum).delete()
    started = time.perf_counter()
    result = import_review_file(path=args.file, curriculum_key=args.curriculum, learner="learner-1")
    imported = time.perf_counter() - started
    started = time.perf_counter()
    report = calibration_report(curriculum=Curriculum.objects.get(key=args.curriculum))
    scored = time.perf_counter() - started
    fit = report["results"]["excluding_same_day"]["model"].get("fit") or {}
    print(f"{Path(args.file).name}: {result.created} reviews imported in {imported:.1f} s; report in {scored:.1f} s; "
          f"test from {report['split']['test_from']}; model: {fit.get('reason')}")
    print()
    print(markdown_table(report))


if __name__ == "__main__":
    main()
