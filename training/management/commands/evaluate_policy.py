"""`manage.py evaluate_policy --policy_dir DIR`: a policy's DTLite files against the baselines, closed loop.

Held-out simulated students (the simulator's held-out domain: no training cohort ever drew them) are taught
by the policy and by random, round_robin, leitner, lowest_recall and oracle; prints mean final recall with
95% intervals (as a table, or the JSON with --json). Two populations: the built-in students ("results") and, when
fitted FSRS-6 parameters exist (--students-like CURRICULUM, else the policy's fitted encoder), the fitted students
("students_like", the same shape): students like the curriculum's own when fitted to a review log, like the training
cohort when the policy's encoder was fitted to synthetic training's simulated pilot ("students_like_fitted_to" says
which when known); and one block per student family ("families": --families, default builtin, fsrs6, actr, hlr and
fitted where fitted FSRS-6 parameters are known) with paired differences and the gap closed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from curriculum.evaluation_protocol import students_like_label
from curriculum.reviews.fields import curriculum_key_argument
from training import pipeline
from training.rl.evaluation import (EVALUATION_BOUNDS, EVALUATION_INTERACTIONS, EVALUATION_SEED, EVALUATION_STUDENTS,
                                    format_report)
from training.rl.students import parse_families
from training.spec import add_integer_flag, add_processes_flag


def _families_or_none(text: str) -> tuple[str, ...]:
    """argparse type of ``--families``: the names, () for "none"; an unknown name is a parser error."""
    if text.strip().lower() == "none":
        return ()
    try:
        return parse_families(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


class Command(BaseCommand):
    help = "Evaluate a policy directory (dt_lite_weights.npz + dt_lite_config.json) on held-out simulated students."

    def add_arguments(self, parser):
        parser.add_argument("--policy_dir", "--policy-dir", dest="policy_dir", required=True,
                            help="directory holding dt_lite_weights.npz and dt_lite_config.json")
        # the evaluation's defaults and bounds (training/rl/evaluation.py): out-of-bounds values are parser errors
        add_integer_flag(parser, "students", default=EVALUATION_STUDENTS, bounds=EVALUATION_BOUNDS["students"],
                         help="held-out simulated students")
        add_integer_flag(parser, "seed", default=EVALUATION_SEED, bounds=EVALUATION_BOUNDS["seed"],
                         help="held-out cohort seed")
        add_integer_flag(parser, "interactions", default=EVALUATION_INTERACTIONS,
                         bounds=EVALUATION_BOUNDS["interactions"], help="reviews per student")
        parser.add_argument("--students-like", "--students_like", dest="students_like", metavar="CURRICULUM",
                            type=curriculum_key_argument,
                            help="evaluate also on students whose memory follows FSRS-6 fitted to this curriculum's "
                                 "ReviewLog (default: the policy's fitted encoder, when it has one)")
        parser.add_argument("--families", type=_families_or_none, default=None,
                            help="student families to report, comma-separated (builtin, fsrs6, actr, hlr, fitted; "
                                 "'none' for none; default builtin,fsrs6,actr,hlr, and fitted where a curriculum's "
                                 "FSRS-6 is known)")
        add_processes_flag(parser, "--processes", help="worker processes the policies' and families' closed loops "
                           "are spread over, one thread each (the results are the same for any number)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON only")

    def handle(self, *args, policy_dir: str, students: int, seed: int, interactions: int, **options):
        directory = Path(policy_dir)
        if not directory.is_dir():
            raise CommandError(f"--policy_dir {policy_dir}: not a directory")
        like = options.get("students_like")
        try:  # fitted (or refused) before the progress bar starts
            population = None if not like else pipeline.students_like_curriculum(curriculum=like)
        except pipeline.PipelineError as exc:
            raise CommandError(str(exc)) from exc
        bar = None if options["json"] else tqdm(total=6, desc="evaluating", file=self.stderr._out, leave=False)

        def progress(stage, done, total, info):
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)
                if info.get("policy"):
                    bar.set_postfix(policy=info["policy"], refresh=False)

        try:
            metrics = pipeline.evaluate_export(output_dir=directory, students=students, seed=seed,
                                               interactions=interactions, on_progress=progress,
                                               students_like=population, families=options.get("families"),
                                               with_fitted=options.get("families") is None,
                                               processes=options["processes"])
        except pipeline.PipelineError as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:
            raise CommandError(f"cannot evaluate {directory}: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
        if options["json"]:
            self.stdout.write(json.dumps(metrics))
            return
        self.stdout.write(f"{metrics['metric']} on {metrics['students']} held-out students (seed {metrics['seed']})")
        self.stdout.write(format_results(metrics))
        if "students_like" in metrics:
            heading, detail = students_like_label(metrics.get("students_like_fitted_to"))
            self.stdout.write(f"{heading} ({detail}):")
            self.stdout.write(format_results(metrics, key="students_like"))
        if metrics.get("families"):
            self.stdout.write("per student family (paired dt - policy on the same students):")
            self.stdout.write(format_report(metrics))


def format_results(metrics: dict, *, key: str = "results") -> str:
    """One population's results (``metrics[key]``) as a table, best first, with each policy's gap to the oracle."""
    results = metrics[key]
    oracle = results.get("oracle", {}).get("mean")
    lines = [f"  {'policy':<14} {'mean':>8}   {'95% CI':<18} {'vs oracle':>9}"]
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["mean"]):
        lo, hi = r["ci95"]
        gap = f"{r['mean'] - oracle:+.4f}" if oracle is not None else ""
        lines.append(f"  {name:<14} {r['mean']:>8.4f}   [{lo:.4f}, {hi:.4f}]  {gap:>9}")
    return "\n".join(lines)
