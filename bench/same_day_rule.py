"""The encoder's same-day rule on the synthetic students: how well each rule predicts same-day reviews, and how the
behaviour policies that choose by the estimate do in closed loop. Prints Markdown tables.

    python bench/same_day_rule.py [--seed 3] [--eval-seed 99]

A pilot cohort (500 students x 100 reviews, 20 concepts, the default behaviour mix, FSRS-6's default parameters)
gives the log FSRS-6 is fitted to, as ``build_synthetic_dataset`` does; its time-ordered last 30% is scored for
three same-day rules with the same fitted 21 parameters: ``stability`` (fsrs6's fitted same-day stabilities, the
curve on fractional days), ``table`` (the constant per previous grade of encoders fitted before it) and ``none``
(the fsrs package's R = 1). Then target_recall and lowest_recall run on 200 held-out students (``--eval-seed``)
with the encoder under the first two rules; round_robin, which reads no estimate, for scale.

Last, the unfitted encoder (what encodes states and drives serving's fallback while no version is active) on the
same held-out students: lowest_recall and target_recall with no same-day rule (configs stored before the default
rule: recall 1.0 for the rest of the day), with the default rule (``fsrs6.default_same_day_stability``), and with
the other short-term intervals it was chosen among; and each rule's recall 5 minutes after a lapse.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.rl.calibration import auc, log_loss  # noqa: E402
from training.rl.encoder import EncoderConfig, effective_grade, fit_encoder_config, fsrs6  # noqa: E402
from training.rl.evaluation import final_recall  # noqa: E402
from training.rl.simulator import generate_logs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3, help="training cohort seed (default 3)")
    parser.add_argument("--eval-seed", type=int, default=99, help="held-out cohort seed (default 99)")
    args = parser.parse_args()
    pilot = generate_logs(num_users=500, interactions=100, num_concepts=20, seed=args.seed)
    cols = {k: np.asarray(getattr(pilot, k)) for k in ("learner", "concept", "t", "correct", "grade")}
    fitted, fit = fit_encoder_config(**cols, num_concepts=20)
    table = replace(fitted, fsrs6_same_day_stability=None, fsrs6_same_day_recall=fit.same_day_recall)
    print(f"seed {args.seed}: {fit.reason}; same-day stabilities (days) {np.round(fit.same_day_stability, 4).tolist()}, "
          f"table {np.round(fit.same_day_recall, 3).tolist()}\n")
    grade = effective_grade(cols["correct"], cols["grade"])
    test = cols["t"] >= np.sort(cols["t"])[int(0.7 * cols["t"].size)]
    y = cols["correct"].astype(np.float64)
    print("| rule | same-day reviews | log loss | AUC | all repeat reviews: log loss | AUC |\n|---|---:|---:|---:|---:|---:|")
    rules = {"stability": {"same_day_stability": fit.same_day_stability},
             "table": {"same_day_recall": fit.same_day_recall}, "none": {}}
    for name, rule in rules.items():
        r = fsrs6.replay(cols["learner"], cols["concept"], cols["t"], grade, w=fit.parameters, **rule)
        same_day = test & ~r["first"] & (r["elapsed_days"] < 1)
        repeat = test & ~r["first"]
        print(f"| {name} | {same_day.sum()} | {log_loss(y=y[same_day], p=r['p'][same_day]):.4f} | "
              f"{auc(y=y[same_day], p=r['p'][same_day]):.3f} | {log_loss(y=y[repeat], p=r['p'][repeat]):.4f} | "
              f"{auc(y=y[repeat], p=r['p'][repeat]):.3f} |")
    print(f"\nClosed loop, 200 held-out students (seed {args.eval_seed}), mean final recall [95% CI]:\n")
    print("| policy | encoder's same-day rule | mean | 95% CI |\n|---|---|---:|---|")
    runs = [(p, name, enc) for p in ("target_recall", "lowest_recall") for name, enc in (("stability", fitted),
                                                                                         ("table", table))]
    for policy, name, encoder in runs + [("round_robin", "-", fitted)]:
        v = final_recall(policy_name=policy, num_concepts=20, students=200, interactions=100, seed=args.eval_seed,
                         encoder=encoder)
        half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
        print(f"| {policy} | {name} | {v.mean():.4f} | [{v.mean() - half:.4f}, {v.mean() + half:.4f}] |")
    default_rule(eval_seed=args.eval_seed)


def default_rule(*, eval_seed: int) -> None:
    """The unfitted encoder's same-day rules in closed loop (see the module docstring)."""
    w = fsrs6.DEFAULT_PARAMETERS
    minute = 1.0 / 1440.0
    rules = {
        "none (stored before the rule)": EncoderConfig(num_concepts=20, fsrs6_same_day_default=False),
        "default: 1 min, w1, w2, w3": EncoderConfig(num_concepts=20),
        "package steps: 1 min, 5.5 min, 10 min, w3": EncoderConfig(
            num_concepts=20, fsrs6_same_day_stability=(minute, 5.5 * minute, 10 * minute, w[3])),
        "relearning step: 10 min, w1, w2, w3": EncoderConfig(
            num_concepts=20, fsrs6_same_day_stability=(10 * minute, w[1], w[2], w[3])),
        "first stabilities: w0, w1, w2, w3": EncoderConfig(num_concepts=20, fsrs6_same_day_stability=tuple(w[:4])),
    }
    print(f"\nThe unfitted encoder (serving's fallback), 200 held-out students (seed {eval_seed}), mean final recall:\n")
    print("| same-day rule | recall 5 min after Again | lowest_recall | 95% CI | target_recall | 95% CI |\n"
          "|---|---:|---:|---|---:|---|")
    for name, encoder in rules.items():
        memory = fsrs6.init_memory(1, 1)
        fsrs6.update(memory, [0], [0], [0.0], [1])
        after = fsrs6.recall(memory, [0], [0], [300.0], same_day_stability=encoder.same_day_stability)[0]
        cells = [f"{after:.4f}"]
        for policy in ("lowest_recall", "target_recall"):
            v = final_recall(policy_name=policy, num_concepts=20, students=200, interactions=100, seed=eval_seed,
                             encoder=encoder)
            half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
            cells += [f"{v.mean():.4f}", f"[{v.mean() - half:.4f}, {v.mean() + half:.4f}]"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
