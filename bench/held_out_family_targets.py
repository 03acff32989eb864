"""Experiment (issue 21, leave-one-family-out): on a student family the policy never trained on, can any target of
target_recall reach round_robin? The encoder is fitted, as a leave-one-family-out training fits it, to the pilot
cohort of the other families (the default mix, 500 learners x 100 reviews, 20 concepts, ``--seed``); then the held-out
family's validation students are taught by round_robin, lowest_recall and target_recall at each of ``--targets``,
with each target's paired difference against round_robin (mean and normal 95% interval over the students).

Every behaviour policy of the product's mix that reads the estimate is target_recall at some target (or noise
around it), so where no target reaches round_robin on the held-out family, a policy trained on that mix would have to
do what none of its teachers does to meet the issue's leave-one-family-out target there.

    python bench/held_out_family_targets.py [--held-out actr hlr] [--seed 3] [--eval-seeds 99 2024]
        [--targets 0.15 0.25 0.35 0.45 0.55 0.65 0.75] [--threads 1] [--json FILE]

Simulation only (about 30 s a family on one thread). The reporting seed 1234 is refused.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")


def main() -> None:
    import django

    django.setup()
    import training_recipe as recipe
    from threadpoolctl import threadpool_limits

    from training.pipeline import fit_encoder
    from training.rl.evaluation import closed_loop_final_recall
    from training.rl.policies import make_policy
    from training.rl.simulator import generate_logs, policy_rng
    from training.rl.students import make_cohort
    from training.rl.trajectories import DEFAULT_CHUNK_ROWS

    trained_families = ("builtin", "fsrs6", "actr", "hlr")  # train_policy.py --hold-out's choices
    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--held-out", nargs="+", default=["actr", "hlr"], choices=trained_families)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75])
    parser.add_argument("--json", metavar="FILE", help="append the figures as one JSON line")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    if any(not 0.0 < t < 1.0 for t in args.targets):
        parser.error("--targets: each in (0, 1)")
    if args.threads < 1:
        parser.error("--threads: at least 1")
    threadpool_limits(limits=args.threads)
    concepts, interactions, students = recipe.CONCEPTS, recipe.INTERACTIONS, recipe.STUDENTS
    started = time.perf_counter()
    record = {"seed": args.seed, "targets": args.targets, "held_out": {}}
    print("| held-out family | eval seed | round_robin | lowest_recall | target | target_recall | "
          "target_recall - round_robin | 95% CI |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for held in args.held_out:
        others = tuple(f for f in trained_families if f != held)
        pilot = generate_logs(num_users=recipe.USERS, interactions=interactions, num_concepts=concepts,
                              seed=args.seed, families=others)
        encoder = fit_encoder(pilot.chunks(size=DEFAULT_CHUNK_ROWS), num_concepts=concepts)
        del pilot
        for eval_seed in args.eval_seeds:
            def run(name: str, target: float | None = None):
                cohort = make_cohort(family=held, num_students=students, num_concepts=concepts,
                                     interactions=interactions, seed=eval_seed, held_out=True)
                policy = make_policy(name, num_learners=students, num_concepts=concepts,
                                     rng=policy_rng(seed=eval_seed, held_out=True, name=name))
                if target is not None:
                    policy.target = target
                return closed_loop_final_recall(cohort=cohort, policy=policy, encoder=encoder)

            round_robin, lowest = run("round_robin"), run("lowest_recall")
            by_target = {}
            for target in args.targets:
                value = run("target_recall", target)
                d = value - round_robin
                by_target[str(target)] = round(float(value.mean()), 4)
                print(f"| {held} | {eval_seed} | {round_robin.mean():.4f} | {lowest.mean():.4f} | {target:g} | "
                      f"{value.mean():.4f} | {d.mean():+.4f} | [{recipe._low(d):+.4f}, {recipe._high(d):+.4f}] |",
                      flush=True)
            record["held_out"].setdefault(held, {})[eval_seed] = {
                "round_robin": round(float(round_robin.mean()), 4), "lowest_recall": round(float(lowest.mean()), 4),
                "target_recall": by_target}
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        recipe.append_json_line(args.json, record)


if __name__ == "__main__":
    main()
