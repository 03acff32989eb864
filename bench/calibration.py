"""Calibration of the memory model on a real review log: import bench/data/fsrs-real-half.csv into a fresh
curriculum and print the report (srs-benchmark's scoring) as a Markdown table; then the same held-out scoring of
the fitted FSRS-6 without and with per-concept recall exponents (issue 21; ``concept_exponents_table``).

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
    print()
    print(concept_exponents_table(Curriculum.objects.get(key=args.curriculum)))


def concept_exponents_table(curriculum) -> str:
    """Markdown: held-out log loss and AUC of the fitted FSRS-6's recall without and with per-concept recall exponents
    (``fit_concept_recall_exponents`` on the train part's repeat reviews, at the default prior sd and half and twice
    it, to show the sensitivity; the default is what ``fit_encoder_config(concept_exponents=True)`` uses), scored on
    the report's test part (repeat reviews, a day or more apart and all)."""
    import numpy as np

    from curriculum.calibration import _all_reviews, grades_of
    from training.rl.calibration import auc, log_loss
    from training.rl.encoder import fsrs6
    from training.rl.encoder.fit import CONCEPT_EXPONENT_PRIOR_SD, fit_concept_recall_exponents, time_split
    from training.rl.encoder.fsrs_fit import fit_fsrs6

    r = _all_reviews(curriculum=curriculum, chunk_size=100_000)
    part, _ = time_split(r["t"])
    train = np.zeros(r["t"].size, dtype=bool)
    train[part] = True
    grade = grades_of(grade=r["grade"], correct=r["correct"])
    fit = fit_fsrs6(learner=r["learner"][train], concept=r["concept"][train], t=r["t"][train], grade=grade[train],
                    correct=r["correct"][train])
    model = fsrs6.replay(r["learner"], r["concept"], r["t"], grade, w=fit.parameters,
                         same_day_stability=fit.same_day_stability)
    repeat = ~model["first"]
    use = train & repeat
    lines = ["| prior sd of log k | log k sd | reviews | log loss without / with | AUC without / with |",
             "| --- | ---: | --- | --- | --- |"]
    for sd in (CONCEPT_EXPONENT_PRIOR_SD / 2, CONCEPT_EXPONENT_PRIOR_SD, CONCEPT_EXPONENT_PRIOR_SD * 2):
        k = np.asarray(fit_concept_recall_exponents(p=model["p"][use], correct=r["correct"][use],
                                                    concept=r["concept"][use], num_concepts=int(r["concept"].max()) + 1,
                                                    prior_sd=sd))
        for label, kind in (("a day or more apart", repeat & (model["elapsed_days"] >= 1)), ("all repeats", repeat)):
            test = kind & ~train
            y, p = r["correct"][test].astype(np.float64), model["p"][test]
            q = p ** k[r["concept"][test]]
            default = " (default)" if sd == CONCEPT_EXPONENT_PRIOR_SD else ""
            lines.append(f"| {sd:g}{default} | {np.log(k).std():.2f} | {label} ({int(test.sum()):,}) | "
                         f"{log_loss(y=y, p=p):.4f} / {log_loss(y=y, p=q):.4f} | {auc(y=y, p=p):.3f} / "
                         f"{auc(y=y, p=q):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
