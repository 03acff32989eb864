"""Experiment (issue 21): a teacher with privileged information in the synthetic training mix. Every behaviour policy
of the product's mix reads the encoder's recall estimate, so a Decision Transformer trained on their log imitates
choices no better informed than the estimate (bench/target_ceiling.py: two thirds of the lowest_recall-to-oracle
gap is the estimate, and the learner's own outcomes recover none of it). In simulation the truth is known: a share
of the cohort is taught by a teacher that reads the simulated students' true memory, and the DT, which sees only
the log (the same observable history as at serving time), is trained on the whole. This is the privileged-teacher
recipe of "Learning by Cheating" (Chen, Zhou, Koltun & Krahenbuhl, CoRL 2019): what the student can learn is the part
of the teacher's choices that the observable history predicts (e.g. each concept's difficulty, pooled across the
cohort, which the concept head can learn from the concept's identity and features).

The pilot cohort (whose log the encoder's FSRS-6 is fitted to) is the default mix, as in ``build_synthetic_dataset``;
the training cohort's mix is the default one scaled to 1 - ``--share`` plus ``--teacher`` at ``--share``:

- ``oracle``: the concept whose review raises the expected true recall a horizon ahead the most (what the
  evaluation's oracle does);
- ``truth_target``: target_recall at each learner's own target (varied_target_recall's range) on the true recall.

Then the default recipe (as ``training_recipe.py``), DTLite and the baselines on 200 held-out validation students of
each evaluation seed, paired differences, and the share of the lowest_recall-to-oracle gap closed. Simulation in
this process (the privileged teacher is refused by ``normalise_mix``, so this script admits it for its own run).
The reporting seed 1234 is refused.

    python bench/privileged_teacher.py [--teacher oracle|truth_target] [--share 0.3] [--seed 3]
        [--eval-seeds 99 2024] [--threads 2] [--json FILE]

``--share 0``: the default mix (the same script's baseline run).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import numpy as np  # noqa: E402


def main() -> None:
    import django

    django.setup()
    import training_recipe as recipe

    from training.rl import policies
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.rl.evaluation import final_recall, gap_closed
    from training.pipeline import fit_encoder
    from training.rl.simulator import generate_logs
    from training.rl.trajectories import DEFAULT_CHUNK_ROWS, extract_trajectories

    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--teacher", choices=["oracle", "truth_target"], default="oracle")
    parser.add_argument("--share", type=float, default=0.3, help="the privileged teacher's share of the cohort")
    parser.add_argument("--json", metavar="FILE", help="append the figures as one JSON line")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    if not 0.0 <= args.share < 1.0:
        parser.error("--share: in [0, 1)")
    concepts, users, interactions = recipe.CONCEPTS, recipe.USERS, recipe.INTERACTIONS

    class TruthTarget(policies.VariedTargetRecallPolicy):
        """varied_target_recall on the simulator's true recall (each learner's own target)."""

        name = "truth_target"
        uses_true_recall = True

        def select(self, obs):
            seen = policies._reviewed(obs)
            return policies.never_reviewed_first(
                seen, lambda done: np.argmin(np.abs(obs.true_recall[done] - self._targets(done)), axis=1))

    policies.POLICIES[TruthTarget.name] = TruthTarget
    policies.BEHAVIOUR_POLICIES = (*policies.BEHAVIOUR_POLICIES, "oracle", TruthTarget.name)  # this run only
    mix = {name: w * (1.0 - args.share) for name, w in policies.DEFAULT_POLICY_MIX.items()}
    if args.share:
        mix[args.teacher] = args.share

    started = time.perf_counter()
    pilot = generate_logs(num_users=users, interactions=interactions, num_concepts=concepts, seed=args.seed)
    encoder = fit_encoder(pilot.chunks(size=DEFAULT_CHUNK_ROWS), num_concepts=concepts)
    logs = generate_logs(num_users=users, interactions=interactions, num_concepts=concepts, seed=args.seed,
                         policy_mix=mix, encoder=encoder)
    dataset = extract_trajectories(chunks=logs.chunks(size=DEFAULT_CHUNK_ROWS), encoder=encoder, total_rows=len(logs))
    print(f"## privileged teacher {args.teacher} at {args.share:g} of the cohort: training seed {args.seed} "
          f"(data {time.perf_counter() - started:.0f} s)\n", flush=True)
    model = recipe.train_and_report(dataset, seed=args.seed, threads=args.threads, eval_seeds=args.eval_seeds,
                                    prefix="bench-privileged-")
    record = {"teacher": args.teacher, "share": args.share, "seed": args.seed, "eval": {}}
    print("\n| eval seed | dt | target_recall | lowest_recall | oracle | dt - target_recall [95% CI] | gap closed |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    with limited_threads(EVALUATION_THREADS):
        for eval_seed in args.eval_seeds:
            values = {name: final_recall(policy_name=name, num_concepts=concepts, students=recipe.STUDENTS,
                                         interactions=interactions, seed=eval_seed, encoder=encoder)
                      for name in ("target_recall", "lowest_recall", "oracle")}
            values["dt"] = recipe.final_recall_of(model, encoder=encoder, eval_seed=eval_seed)
            d = values["dt"] - values["target_recall"]
            closed = gap_closed(dt=values["dt"].mean(), lowest_recall=values["lowest_recall"].mean(),
                                oracle=values["oracle"].mean(), others=(values["target_recall"].mean(),))
            print(f"| {eval_seed} | {values['dt'].mean():.4f} | {values['target_recall'].mean():.4f} | "
                  f"{values['lowest_recall'].mean():.4f} | {values['oracle'].mean():.4f} | {d.mean():+.4f} "
                  f"[{recipe._low(d):+.4f}, {recipe._high(d):+.4f}] | "
                  + ("-" if closed is None else f"{100 * closed:.1f}%") + " |", flush=True)
            record["eval"][eval_seed] = {name: round(float(v.mean()), 4) for name, v in values.items()}
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        recipe.append_json_line(args.json, record)


if __name__ == "__main__":
    main()
