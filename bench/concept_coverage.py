"""Diagnosis (issue 21): which concepts does a policy never present, per student family?

A concept a student never reviewed scores 0 in every family's recall (nothing is known before it is taught), so a
policy that gives up on a concept pays for it in full on learners where that concept was not hopeless. The built-in
students' curriculum has a wide, fixed spread of concept difficulty (``exp(1.2 z_c)``); the other families share the
same per-concept traits z_c with a milder spread (ACT-R 0.3): what a policy learned to give up on in built-in students
it may give up on everywhere.

For a DTLite pair (``--policy-dir``, e.g. a ``train_crl_policy --output_dir`` or ``bench/policy_gradient.py
--save-dir``) and the heuristics, on ``--students`` held-out students of each family (validation seed; the
reporting seed is refused), greedy as served: each policy's mean final true recall (``evaluation.final_recall``'s
score), the mean number of concepts a student was never shown, and per concept the share of students never shown
it (only concepts some policy left out).

    OMP_NUM_THREADS=1 python bench/concept_coverage.py --policy-dir DIR [--families builtin,fsrs6,actr,hlr]
        [--seed 99] [--students 200]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import numpy as np  # noqa: E402
from training_recipe import INTERACTIONS  # noqa: E402  (the default command's reviews per student)


def shown(*, policy_name: str, lite, family: str, students: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(presented bool [students, concepts], final recall float64 [students]) of one policy's closed loop on the
    held-out students of ``family`` (seed ``seed``), as ``evaluation.final_recall`` drives it (the same cohort, the
    same policy stream)."""
    from training.rl.encoder import EncoderConfig, StateEncoder
    from training.rl.evaluation import FINAL_RECALL_DELAY_S, DecisionTransformerPolicy
    from training.rl.policies import make_policy
    from training.rl.simulator import policy_rng, run_policies
    from training.rl.students import make_cohort

    concepts = int(lite.config["action_dim"])
    encoder = EncoderConfig.from_dict(lite.config["encoder"])
    cohort = make_cohort(family=family, num_students=students, num_concepts=concepts, interactions=INTERACTIONS,
                         seed=seed, held_out=True)
    rng = policy_rng(seed=seed, held_out=True, name=policy_name)
    policy = (DecisionTransformerPolicy(model=lite, num_learners=students, num_concepts=concepts, rng=rng)
              if policy_name == "dt" else make_policy(policy_name, num_learners=students, num_concepts=concepts,
                                                      rng=rng))
    rollout = run_policies(cohort=cohort, groups=[(policy, np.arange(students))], encoder=StateEncoder(encoder))
    presented = np.zeros((students, concepts), bool)
    presented[np.arange(students)[:, None], rollout.concepts] = True
    final = cohort.recall_probability(cohort.schedule()[:, -1] + FINAL_RECALL_DELAY_S).mean(axis=1)
    return presented, final


def main() -> None:
    import django

    django.setup()
    import training_recipe as recipe
    from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.rl.dtlite import DTLite
    from training.rl.evaluation import HEURISTICS
    from training.rl.students import parse_families

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy-dir", required=True, help="a folder with dt_lite_weights.npz and dt_lite_config.json")
    parser.add_argument("--families", default="builtin,fsrs6,actr,hlr", help="student families, comma-separated")
    parser.add_argument("--seed", type=int, default=99, help="held-out students' seed (a validation seed; default 99)")
    parser.add_argument("--students", type=int, default=200, help="held-out students a family (default 200)")
    args = parser.parse_args()
    if args.seed == recipe.REPORTING_SEED:
        parser.error(f"--seed {args.seed} is the reporting seed: diagnose on validation seeds")
    try:
        families = parse_families(args.families)
    except ValueError as exc:
        parser.error(str(exc))
    if "fitted" in families:
        parser.error("--families: fitted students need a curriculum's log; use builtin, fsrs6, actr or hlr")
    folder = Path(args.policy_dir)
    lite = DTLite.load(folder / WEIGHTS_FILE, folder / CONFIG_FILE)
    print(f"## concepts never presented: {folder}, held-out seed {args.seed}, {args.students} students a family, "
          f"{INTERACTIONS} reviews each\n")
    print("| family | policy | final recall | concepts never shown a student | share never shown, by concept |")
    print("|---|---|---:|---:|---|")
    with limited_threads(EVALUATION_THREADS):
        for family in families:
            runs = {name: shown(policy_name=name, lite=lite, family=family, students=args.students, seed=args.seed)
                    for name in ("dt", *HEURISTICS)}
            for name, (presented, final) in runs.items():
                never = (~presented).mean(axis=0)
                by_concept = ", ".join(f"{k}: {never[k]:.2f}" for k in np.flatnonzero(never)) or "-"
                print(f"| {family} | {name} | {final.mean():.4f} | {(~presented).sum(axis=1).mean():.2f} | "
                      f"{by_concept} |", flush=True)


if __name__ == "__main__":
    main()
