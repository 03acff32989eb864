"""Experiment (issue 21): condition the Decision Transformer on returns relative to what the learner would have
earned anyway, instead of on raw returns. Each training learner is simulated twice, the same student (same seed):
under the behaviour mix (the training data) and under one reference policy alone (default target_recall). About
three quarters of a raw return is the learner (the two returns correlate at about 0.9), so conditioning on a high
return selects able learners rather than good choices; the difference, the episode's advantage A = R - R_ref, is
what the choices added.

``--mode offset`` (default): each episode's returns-to-go shifted by the learner's reference return, rtg_t - R_ref =
A - (reward so far): the served model is unchanged (it still conditions on target - reward so far), only its target
is a quantile of A rather than of R. ``--mode constant``: every step of an episode conditions on A itself, and the
evaluation feeds the target unchanged at every step (a serving change if it were adopted).

The default recipe trains on the shifted data; DTLite is evaluated at ``--quantiles`` of A, with target_recall (its
own target and ``--fixed-targets``), lowest_recall and round_robin, on held-out validation students, paired.

    python bench/advantage_conditioning.py [--seed 3] [--eval-seeds 99 2024] [--mode offset|constant]
        [--quantiles 0.5 0.9 0.99] [--fixed-targets 0.45] [--concept-exponents] [--varied-target-range LOW HIGH]
        [--reference target_recall] [--threads 1] [--json FILE]

An experiment, not a product feature; the reporting seed 1234 is refused.
"""
from __future__ import annotations

import dataclasses
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
    import torch

    import training_recipe as recipe
    from advantage_weights import paired_returns
    from training.pipeline import build_synthetic_dataset
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.rl.encoder import EncoderConfig
    from training.rl.evaluation import DecisionTransformerPolicy, final_recall
    from training.rl.policies import TargetRecallPolicy
    from training.rl.trainer import target_return

    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--mode", choices=("offset", "constant"), default="offset")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.9, 0.99])
    parser.add_argument("--fixed-targets", type=float, nargs="*", default=[0.45])
    parser.add_argument("--concept-exponents", action="store_true")
    parser.add_argument("--varied-target-range", type=float, nargs=2, metavar=("LOW", "HIGH"))
    parser.add_argument("--reference", default="target_recall", help="the reference policy (a behaviour policy name)")
    parser.add_argument("--json", metavar="FILE", help="append the figures as one JSON line")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    torch.set_num_threads(args.threads)
    users, interactions, concepts = recipe.USERS, recipe.INTERACTIONS, recipe.CONCEPTS
    recipe.set_varied_target_range(parser, args.varied_target_range)

    started = time.perf_counter()
    dataset = build_synthetic_dataset(num_users=users, interactions=interactions, concepts=concepts, seed=args.seed,
                                      concept_exponents=args.concept_exponents)
    encoder = EncoderConfig.from_dict(dataset.encoder)
    returns, reference_returns = paired_returns(dataset, users=users, interactions=interactions, concepts=concepts,
                                                seed=args.seed, reference=args.reference)
    advantage = returns - reference_returns
    lengths = np.diff(np.asarray(dataset.episode_starts))
    if args.mode == "offset":
        dataset.returns_to_go = (dataset.returns_to_go - np.repeat(reference_returns, lengths)).astype(np.float32)
    else:
        dataset.returns_to_go = np.repeat(advantage, lengths).astype(np.float32)
        original_select = DecisionTransformerPolicy.select

        def constant_select(self, obs):
            return original_select(self, dataclasses.replace(
                obs, cumulative_reward=np.zeros_like(obs.cumulative_reward)))

        DecisionTransformerPolicy.select = constant_select
    title = (f"## seed {args.seed}, mode {args.mode}, reference {args.reference}"
             + (", concept recall exponents" if args.concept_exponents else "")
             + (f", varied targets {args.varied_target_range[0]:g}-{args.varied_target_range[1]:g}"
                if args.varied_target_range else ""))
    print(title + "\n")
    print(f"data {time.perf_counter() - started:.0f} s; return vs reference return: correlation "
          f"{np.corrcoef(returns, reference_returns)[0, 1]:.3f}; advantage mean {advantage.mean():+.4f}, sd "
          f"{advantage.std():.4f}, share > 0 {np.mean(advantage > 0):.2f}\n", flush=True)
    model = recipe.train_and_report(dataset, seed=args.seed, threads=args.threads, eval_seeds=args.eval_seeds,
                                    prefix="bench-advantage-conditioning-")
    record = {"title": title, "seed": args.seed, "mode": args.mode, "eval": {}}
    print("\n| eval seed | policy | mean final recall | dt (quantile 0.9) - policy, paired | 95% CI |")
    print("|---:|---|---:|---:|---|")
    with limited_threads(EVALUATION_THREADS):
        for eval_seed in args.eval_seeds:
            by_policy: dict[str, np.ndarray] = {}
            for q in args.quantiles:
                model.config["target_return"] = target_return(dataset, quantile=q)
                by_policy[f"dt at A quantile {q:g}"] = recipe.final_recall_of(model, encoder=encoder,
                                                                              eval_seed=eval_seed)
            default_target = TargetRecallPolicy.target
            for target in (default_target, *args.fixed_targets):
                TargetRecallPolicy.target = target
                try:
                    by_policy[f"target_recall {target:g}"] = final_recall(
                        policy_name="target_recall", num_concepts=concepts, students=recipe.STUDENTS,
                        interactions=interactions, seed=eval_seed, encoder=encoder)
                finally:
                    TargetRecallPolicy.target = default_target
            for name in ("lowest_recall", "round_robin"):
                by_policy[name] = final_recall(policy_name=name, num_concepts=concepts, students=recipe.STUDENTS,
                                               interactions=interactions, seed=eval_seed, encoder=encoder)
            dt = by_policy.get("dt at A quantile 0.9", next(iter(by_policy.values())))
            for name, v in by_policy.items():
                d = dt - v
                print(f"| {eval_seed} | {name} | {v.mean():.4f} | {d.mean():+.4f} | [{recipe._low(d):+.4f}, "
                      f"{recipe._high(d):+.4f}] |", flush=True)
            record["eval"][eval_seed] = {name: round(float(v.mean()), 4) for name, v in by_policy.items()}
    if args.json:
        recipe.append_json_line(args.json, record)


if __name__ == "__main__":
    main()
