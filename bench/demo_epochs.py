"""Benchmark: how many epochs `setup_demo` (`make run`) must train for its demo policy to beat the fallback, chosen
on validation seeds rather than on the demo's own training seed and evaluation protocol.

    .venv/bin/python bench/demo_epochs.py [--epochs 3 8] [--train-seeds 1] [--eval-seeds 1 2 3 11]

For each training seed and epoch count: `train_crl_policy` with setup_demo's sizes and recipe (DEMO_SIZES,
DEMO_RECIPE, 20 concepts; a fresh process, timed), then DTLite and the fallback the promotion gate compares it with (FALLBACK_POLICY with
serving's unfitted default encoder) on each evaluation seed's held-out students, setup_demo's evaluation size.
Prints one row per (training seed, epochs, evaluation seed): both means with their 95% intervals and DT - fallback.
The demo's own training seed (train_crl_policy's default) and evaluation seed (EVALUATION_SEED) are refused here:
a seed used to report the demo's result is never used to choose its epochs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
import django  # noqa: E402

django.setup()
from curriculum.evaluation_protocol import FALLBACK_POLICY  # noqa: E402
from curriculum.management.commands.setup_demo import DEMO_CONCEPTS, DEMO_RECIPE, DEMO_SIZES  # noqa: E402
from curriculum.state_specs import StateSpec  # noqa: E402
from training.pipeline import evaluate_export  # noqa: E402
from training.rl.evaluation import EVALUATION_SEED, final_recall  # noqa: E402
from training.spec import TrainingSpec  # noqa: E402


def interval(values) -> tuple[float, float, float]:
    """Mean and 95% normal interval, as the evaluation computes them."""
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / len(values) ** 0.5
    return mean, mean - half, mean + half


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--train-seeds", dest="train_seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--eval-seeds", dest="eval_seeds", type=int, nargs="+", default=[1, 2, 3, 11])
    args = parser.parse_args()
    demo_seed = TrainingSpec.default("seed")
    if demo_seed in args.train_seeds or EVALUATION_SEED in args.eval_seeds:
        parser.error(f"training seed {demo_seed} and evaluation seed {EVALUATION_SEED} are the demo's own: "
                     f"choose on others")
    students, interactions = DEMO_SIZES["eval_students"], DEMO_SIZES["interactions"]
    encoder = StateSpec.default(num_concepts=DEMO_CONCEPTS).encoder_config
    fallback = {}
    for seed in args.eval_seeds:
        fallback[seed] = interval(final_recall(policy_name=FALLBACK_POLICY, num_concepts=DEMO_CONCEPTS,
                                               students=students, interactions=interactions, seed=seed,
                                               encoder=encoder))
    print(f"## setup_demo's policy ({DEMO_SIZES}, {DEMO_CONCEPTS} concepts) against the fallback "
          f"({FALLBACK_POLICY}, default encoder), {students} held-out students x {interactions} reviews\n")
    print("| training seed | epochs | train_crl_policy s | eval seed | DT | fallback | DT - fallback |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for train_seed in args.train_seeds:
        for epochs in args.epochs:
            with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
                flags = [item for name, value in {**DEMO_SIZES, **DEMO_RECIPE}.items()
                         for item in (f"--{name}", str(value))]
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "manage.py", "train_crl_policy", "--output_dir", tmp, "--no-progress",
                     "--concepts", str(DEMO_CONCEPTS), "--seed", str(train_seed), "--epochs", str(epochs), *flags],
                    cwd=ROOT, capture_output=True, text=True,
                )
                wall = time.perf_counter() - started
                if done.returncode:
                    print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
                    return done.returncode
                for seed in args.eval_seeds:
                    dt = evaluate_export(output_dir=tmp, students=students, seed=seed, interactions=interactions,
                                         families=(), with_fitted=False)["results"]["dt"]
                    mean, lo, hi = fallback[seed]
                    print(f"| {train_seed} | {epochs} | {wall:.0f} | {seed} | {dt['mean']:.4f} "
                          f"[{dt['ci95'][0]:.4f}, {dt['ci95'][1]:.4f}] | {mean:.4f} [{lo:.4f}, {hi:.4f}] | "
                          f"{dt['mean'] - mean:+.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
