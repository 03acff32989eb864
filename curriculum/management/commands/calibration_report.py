"""`manage.py calibration_report --curriculum KEY`: FSRS-6 fitted on the earlier log against the baselines, as srs-benchmark."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from curriculum.calibration import PREDICTORS, TRAIN_FRACTION, calibration_report
from curriculum.models import Curriculum
from curriculum.reviews.fields import curriculum_key_argument


def markdown_table(report: dict) -> str:
    """The report's two sections as one Markdown table (log loss, AUC, RMSE (bins), reviews-weighted)."""
    lines = ["| reviews scored | predictor | log loss | AUC | RMSE (bins) |", "| --- | --- | ---: | ---: | ---: |"]
    for section, label in (("excluding_same_day", "a day or more apart"), ("including_same_day", "same-day included")):
        part = report["results"][section]
        for name in PREDICTORS:
            s = part[name]
            lines.append(f"| {part['n']:,} {label} | {name} | {_fmt(s['log_loss'])} | {_fmt(s['auc'])} | {_fmt(s['rmse_bins'])} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class Command(BaseCommand):
    help = (
        "Scores FSRS-6, fitted on the first 70% of a curriculum's log (by time), on the rest, beside the avg, "
        "moving_avg and default-FSRS-6 baselines (log loss, AUC, srs-benchmark's RMSE over bins)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--curriculum", required=True, type=curriculum_key_argument, help="curriculum key")
        parser.add_argument("--train-fraction", "--train_fraction", dest="train_fraction", type=float, default=TRAIN_FRACTION,
                            help=f"the earliest part of the log (by time) the model is fitted on (default {TRAIN_FRACTION})")
        parser.add_argument("--json", dest="as_json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args, curriculum: str, train_fraction: float, as_json: bool, **options):
        found = Curriculum.objects.filter(key=curriculum).first()
        if found is None:
            raise CommandError(f"--curriculum: no curriculum {curriculum!r}")
        if not 0.0 < train_fraction < 1.0:  # checked here so that no other ValueError is blamed on the flag
            raise CommandError(f"--train-fraction: expected a number between 0 and 1, got {train_fraction!r}")
        report = calibration_report(curriculum=found, train_fraction=train_fraction)
        if as_json:
            self.stdout.write(json.dumps(report))
            return
        fit = report["results"]["excluding_same_day"]["model"].get("fit") or {}
        self.stdout.write(f"Curriculum {report['curriculum']}: {report['reviews']} reviews; test from "
                          f"{report['split']['test_from']}; model: {fit.get('reason', 'not fitted (no reviews)')}")
        self.stdout.write(markdown_table(report))
