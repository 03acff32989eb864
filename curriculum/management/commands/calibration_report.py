"""`manage.py calibration_report --curriculum KEY`: the state encoder's recall estimate against the average-recall predictor."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from curriculum.calibration import TRAIN_FRACTION, calibration_report
from curriculum.models import Curriculum


class Command(BaseCommand):
    help = (
        "How well the state encoder's recall estimate predicts review outcomes on the later part of a curriculum's "
        "log (log loss, AUC, RMSE over probability bins), beside the constant average-recall predictor."
    )

    def add_arguments(self, parser):
        parser.add_argument("--curriculum", required=True, help="curriculum key")
        parser.add_argument("--train-fraction", "--train_fraction", dest="train_fraction", type=float, default=TRAIN_FRACTION,
                            help=f"the earliest part of the log (by time) used for the constant (default {TRAIN_FRACTION})")
        parser.add_argument("--bins", type=int, default=20, help="equal-width probability bins for RMSE (default 20)")
        parser.add_argument("--json", dest="as_json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args, curriculum: str, train_fraction: float, bins: int, as_json: bool, **options):
        found = Curriculum.objects.filter(key=curriculum).first()
        if found is None:
            raise CommandError(f"--curriculum: no curriculum {curriculum!r}")
        if bins < 1:
            raise CommandError(f"--bins: expected a positive integer, got {bins}")
        try:
            report = calibration_report(curriculum=found, train_fraction=train_fraction, bins=bins)
        except ValueError as exc:
            raise CommandError(f"--train-fraction: {exc}") from exc
        if as_json:
            self.stdout.write(json.dumps(report))
            return
        self._table(report)

    def _table(self, report: dict) -> None:
        out = self.stdout
        split, evaluated = report["split"], report["evaluated"]
        out.write(f"Curriculum {report['curriculum']}: {report['reviews']} reviews; train = the first "
                  f"{split['train_fraction']:.0%} by time ({split['train_reviews']}), test = from {split['cut_at']} "
                  f"({split['test_reviews']})")
        out.write(f"Scored: {evaluated['test']} test reviews ({evaluated['first_reviews_excluded']} first reviews of a "
                  f"concept left out); encoder: {report['encoder']['source']}")
        if not report["predictors"]:
            out.write("Not enough reviews to score (the train and the test part each need a repeat review).")
            return
        out.write(f"  {'predictor':<10} {'log loss':>9} {'AUC':>7} {'RMSE(bins)':>11} {'mean p':>7} {'observed':>9}")
        for name, s in report["predictors"].items():
            out.write(f"  {name:<10} {_fmt(s['log_loss'])} {_fmt(s['auc'], 7)} {_fmt(s['rmse_bins'], 11)} "
                      f"{_fmt(s['mean_predicted'], 7)} {_fmt(s['mean_observed'])}")
        enc, const = report["predictors"]["encoder"], report["predictors"]["constant"]
        verdict = "beats" if enc["log_loss"] < const["log_loss"] else "does NOT beat"
        out.write(f"The encoder {verdict} the constant predictor ({report['train_mean_recall']:.4f}) on log loss.")


def _fmt(value: float | None, width: int = 9) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"

