"""Benchmark: the default `train_crl_policy` end to end (generation, training, export, evaluation) on this
machine, timed per stage, with DTLite's closed-loop result against the baselines on 200 held-out students.

    .venv/bin/python bench/train_policy.py [--repeats 1] [-- extra train_crl_policy flags]

Targets (issue "Learning core"): the whole command in at most 10 minutes on a 2-core CPU; DTLite above random,
round_robin and leitner with non-overlapping 95% intervals and at or above lowest_recall. Each repeat is a fresh
process (as an operator runs it); the table reports the median wall time and the last run's evaluation.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more train_crl_policy flags (after --)")
    args = parser.parse_args()
    walls, stages, metrics = [], {}, {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "manage.py", "train_crl_policy", "--output_dir", tmp, "--no-progress", *args.extra],
                cwd=ROOT, capture_output=True, text=True,
            )
            walls.append(time.perf_counter() - started)
            if done.returncode:
                print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
                return done.returncode
            metrics = json.loads((Path(tmp) / "evaluation.json").read_text())
            interactions = int(args.extra[args.extra.index("--interactions") + 1]) if "--interactions" in args.extra else 100
            paired = paired_difference(Path(tmp), students=metrics["students"], seed=metrics["seed"],
                                       interactions=interactions)
            found = re.search(r"Done in \d+ s \((.*)\)\.", done.stdout)
            stages = dict(part.rsplit(" ", 2)[:2] for part in found.group(1).split(", ")) if found else {}

    wall = statistics.median(walls)
    print(f"## train_crl_policy {' '.join(args.extra) or '(defaults)'}: {len(walls)} run(s)\n")
    print("| stage | seconds |\n|---|---:|")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds} |")
    print(f"| **whole command (median wall)** | **{wall:.0f}** |")
    print(f"\nTarget <= {TARGET_SECONDS:.0f} s: {'met' if wall <= TARGET_SECONDS else 'NOT met'} "
          f"(ratio {wall / TARGET_SECONDS:.2f} of the budget)\n")

    results = metrics["results"]
    dt = results["dt"]
    print(f"## {metrics['metric']} on {metrics['students']} held-out students (seed {metrics['seed']})\n")
    print("| policy | mean | 95% CI | dt - policy | intervals overlap |\n|---|---:|---|---:|---|")
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["mean"]):
        lo, hi = r["ci95"]
        overlap = "" if name == "dt" else ("yes" if lo <= dt["ci95"][1] and dt["ci95"][0] <= hi else "no")
        print(f"| {name} | {r['mean']:.4f} | [{lo:.4f}, {hi:.4f}] | {dt['mean'] - r['mean']:+.4f} | {overlap} |")
    beats = all(dt["ci95"][0] > results[b]["ci95"][1] for b in ("random", "round_robin", "leitner"))
    at_least = dt["mean"] >= results["lowest_recall"]["mean"]
    print(f"\nAbove random/round_robin/leitner with non-overlapping intervals: {'yes' if beats else 'NO'}; "
          f"mean at or above lowest_recall: {'yes' if at_least else 'NO'}; "
          f"gap to oracle: {results['oracle']['mean'] - dt['mean']:.4f}")
    print("\nPaired (the same students, review times and dice for both), per-student dt - baseline (and dt - "
          "target_recall, the best behaviour policy of the training mix):\n")
    print("| baseline | mean difference | 95% CI | dt better on |\n|---|---:|---|---:|")
    for name, (mean, lo, hi, share) in paired.items():
        print(f"| {name} | {mean:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {share:.0%} of students |")
    return 0


def paired_difference(policy_dir: Path, *, students: int, seed: int, interactions: int) -> dict[str, tuple[float, float, float, float]]:
    """Per-student final recall of dt minus each baseline's, on the evaluation's cohort: mean, 95% CI, share > 0."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from training.rl.dtlite import DTLite
    from training.rl.evaluation import BASELINES, final_recall
    from training.rl.encoder import EncoderConfig

    lite = DTLite.load(policy_dir / "dt_lite_weights.npz", policy_dir / "dt_lite_config.json")
    encoder = EncoderConfig.from_dict(lite.config["encoder"])
    common = dict(num_concepts=encoder.num_concepts, students=students, interactions=interactions, seed=seed, encoder=encoder)
    dt = final_recall(policy_name="dt", model=lite, **common)
    out = {}
    # target_recall is no baseline of the evaluation, but the best behaviour policy of the training mix: how close
    # the Decision Transformer comes to (or goes past) what it learned from
    for name in (*BASELINES, "target_recall"):
        diff = dt - final_recall(policy_name=name, **common)
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
        out[name] = (float(diff.mean()), float(diff.mean() - half), float(diff.mean() + half), float((diff > 0).mean()))
    return out


if __name__ == "__main__":
    sys.exit(main())
