"""Experiment (issue 21): does drawing the training windows by advantage make the Decision Transformer beat its
teachers? Each training learner is simulated twice, the same student (same seed): under the default behaviour mix
(the training data) and under one reference policy alone (default target_recall). An episode's advantage is its
return minus that learner's reference return (both the fitted encoder's returns), which removes the learner's own
ability from the return (the two correlate at about 0.9). The default recipe then trains on windows drawn from the
episodes with advantage > 0 (``--mode filter``) or with probability proportional to exp(A / (scale x sd A))
(``--mode weight``), and DTLite is evaluated with the baselines on held-out validation students, paired.

    python bench/advantage_weights.py [--seed 3] [--eval-seeds 99 2024] [--mode filter|weight] [--scale 3]
        [--reference target_recall] [--threads 1]

The trainer has no window weights: this script replaces ``trainer.draw_window_ends`` for its own process (an
experiment, not a product feature). The reporting seed 1234 is refused.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import numpy as np  # noqa: E402

def episode_returns(dataset) -> np.ndarray:
    """float64 [E]: each episode's return (its first row's return-to-go)."""
    starts = np.asarray(dataset.episode_starts)
    return dataset.returns_to_go[starts[:-1]].astype(np.float64)


def paired_returns(dataset, *, users: int, interactions: int, concepts: int, seed: int,
                      reference: str) -> tuple[np.ndarray, np.ndarray]:
    """(returns, reference returns), float64 [E] each: every episode's return in ``dataset`` and the same learner's
    (the same simulated student: same seed) under ``reference`` alone, both by the dataset's fitted encoder.
    SystemExit when the episodes do not pair up."""
    from training.rl.encoder import EncoderConfig
    from training.rl.simulator import generate_logs
    from training.rl.trajectories import extract_trajectories

    encoder = EncoderConfig.from_dict(dataset.encoder)
    log = generate_logs(num_users=users, interactions=interactions, num_concepts=concepts, seed=seed,
                        encoder=encoder, policy_mix={reference: 1.0})
    trajectories = extract_trajectories(chunks=log.chunks(size=100_000), encoder=encoder, total_rows=len(log))
    returns, references = episode_returns(dataset), episode_returns(trajectories)
    if len(returns) != len(references):
        raise SystemExit(f"{len(returns)} episodes against {len(references)} reference episodes")
    return returns, references


def main() -> None:
    import django

    django.setup()
    import torch

    import training.rl.trainer as trainer
    import training_recipe as recipe
    from training.pipeline import build_synthetic_dataset

    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--mode", choices=("filter", "weight"), default="filter")
    parser.add_argument("--scale", type=float, default=3.0, help="--mode weight: exp(A / (scale x sd A))")
    parser.add_argument("--reference", default="target_recall", help="the reference policy (a behaviour policy name)")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    torch.set_num_threads(args.threads)

    users, interactions, concepts = recipe.USERS, recipe.INTERACTIONS, recipe.CONCEPTS
    dataset = build_synthetic_dataset(num_users=users, interactions=interactions, concepts=concepts, seed=args.seed)
    returns, reference_returns = paired_returns(dataset, users=users, interactions=interactions,
                                                concepts=concepts, seed=args.seed, reference=args.reference)
    advantage = returns - reference_returns
    if args.mode == "filter":
        weights = (advantage > 0).astype(np.float64)
    else:
        weights = np.exp((advantage - advantage.max()) / (args.scale * advantage.std()))
    row_p = np.repeat(weights, np.diff(np.asarray(dataset.episode_starts)))
    row_p /= row_p.sum()

    def weighted_window_ends(rng: np.random.Generator, *, num_steps: int, batch_size: int) -> np.ndarray:
        return rng.choice(num_steps, size=batch_size, p=row_p)

    trainer.draw_window_ends = weighted_window_ends
    print(f"## seed {args.seed}, {args.mode}" + (f" (scale {args.scale:g})" if args.mode == "weight" else "")
          + f", reference {args.reference}\n")
    print(f"return vs reference return: correlation {np.corrcoef(returns, reference_returns)[0, 1]:.3f}; advantage "
          f"mean {advantage.mean():+.4f}, sd {advantage.std():.4f}, share > 0 {np.mean(advantage > 0):.2f}; "
          f"effective episodes {weights.sum() ** 2 / (weights ** 2).sum():.0f} of {len(weights)}\n")
    recipe.train_and_report(dataset, seed=args.seed, threads=args.threads, eval_seeds=args.eval_seeds,
                            prefix="bench-advantage-")


if __name__ == "__main__":
    main()
