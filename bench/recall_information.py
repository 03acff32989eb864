"""Diagnosis (issue 21): how much of the gap between target_recall and the oracle is the recall estimate? The same
rule (never-reviewed concepts first, then the concept whose recall is closest to a target) is driven three ways on
the same held-out students:

- ``encoder``: the fitted encoder's estimated recall (what target_recall and the Decision Transformer see);
- ``learner offset``: that estimate shifted per learner by an online logit offset, ``theta += eta (correct - p)`` after
  each review of an already-reviewed concept (a per-learner ability read from the learner's own history; online
  logistic calibration);
- ``concept exponents``: the encoder fitted with each concept's recall exponent (``fit_encoder_config(
  concept_exponents=True)``: R ** k_c, k_c fitted across the pilot cohort's learners);
- ``true``: the simulated student's true recall (privileged: only the simulator has it; a ceiling for the rule).

Mean final recall per (target, way), with the oracle, on each evaluation seed. The encoder is fitted to the default
training cohort of ``--seed``. The reporting seed 1234 is refused.

    python bench/recall_information.py [--seed 3] [--eval-seeds 99 2024] [--targets 0.15 0.25 0.35 0.45 0.55]
        [--eta 0.1] [--family builtin]
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

def main() -> None:
    import django

    django.setup()
    import training_recipe as recipe
    from training.pipeline import build_synthetic_dataset
    from training.rl.encoder import EncoderConfig
    from training.rl.evaluation import closed_loop_final_recall, final_recall
    from training.rl.policies import Policy, _reviewed, never_reviewed_first
    from training.rl.simulator import make_cohort, policy_rng

    class TargetOn(Policy):
        """The target rule on the encoder's recall, optionally shifted by a per-learner logit offset, or on the
        true recall (``truth``)."""

        name = "target_on"
        uses_true_recall = True

        def __init__(self, *, target: float, eta: float, truth: bool, **kwargs) -> None:
            super().__init__(**kwargs)
            self.target, self.eta, self.truth = target, eta, truth
            self.theta = np.zeros(self.num_learners)
            self.predicted = np.full(self.num_learners, np.nan)

        def select(self, obs):
            self.predicted[:] = np.nan

            def choose(done: np.ndarray) -> np.ndarray:
                if self.truth:
                    p = obs.true_recall[done]
                else:
                    p = np.clip(obs.recall_of(done), 1e-4, 1 - 1e-4)
                    p = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + self.theta[done, None])))
                chosen = np.argmin(np.abs(p - self.target), axis=1)
                self.predicted[done] = p[np.arange(len(done)), chosen]
                return chosen

            return never_reviewed_first(_reviewed(obs), choose)

        def observe(self, *, concepts, t, correct, rewards) -> None:
            known = ~np.isnan(self.predicted)
            self.theta[known] += self.eta * (correct[known].astype(np.float64) - self.predicted[known])

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=3, help="the training cohort the encoder is fitted to")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[99, 2024])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.15, 0.25, 0.35, 0.45, 0.55])
    parser.add_argument("--eta", type=float, default=0.1, help="the learner offset's step size")
    parser.add_argument("--family", default=None, help="student family (default: the built-in students)")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    n, c, steps = recipe.STUDENTS, recipe.CONCEPTS, recipe.INTERACTIONS
    dataset = build_synthetic_dataset(num_users=recipe.USERS, interactions=steps, concepts=c, seed=args.seed)
    encoder = EncoderConfig.from_dict(dataset.encoder)
    # the same pilot's fit with each concept's recall exponent (fit_encoder_config(concept_exponents=True))
    with_exponents = EncoderConfig.from_dict(build_synthetic_dataset(
        num_users=recipe.USERS, interactions=steps, concepts=c, seed=args.seed, concept_exponents=True).encoder)

    def run(eval_seed: int, config=encoder, **kwargs) -> np.ndarray:
        cohort = make_cohort(family=args.family, students_like=None, num_students=n, num_concepts=c,
                             interactions=steps, seed=eval_seed, held_out=True, config=None)
        policy = TargetOn(num_learners=n, num_concepts=c, rng=policy_rng(seed=eval_seed, held_out=True,
                                                                          name="target_on"), **kwargs)
        return closed_loop_final_recall(cohort=cohort, policy=policy, encoder=config)

    concept_log_k = np.log(with_exponents.concept_recall_exponent)
    truth_note = ""
    difficulty = getattr(make_cohort(family=args.family, students_like=None, num_students=2, num_concepts=c,
                                     interactions=steps, seed=args.seed, held_out=False, config=None),
                         "difficulty", None)
    if difficulty is not None:  # the built-in students' per-concept difficulty (a half-life divisor)
        truth_note = f"; correlation with the students' log difficulty {np.corrcoef(concept_log_k, np.log(difficulty))[0, 1]:.2f}"
    print(f"per-concept log k fitted to the pilot cohort's log: sd {concept_log_k.std():.2f}, range "
          f"[{concept_log_k.min():+.2f}, {concept_log_k.max():+.2f}]{truth_note}\n")

    print(f"## encoder fitted to seed {args.seed}'s cohort; {n} held-out {args.family or 'builtin'} students x {steps} "
          f"reviews, {c} concepts; learner offset eta {args.eta:g}\n")
    print("| eval seed | target | encoder | learner offset (paired vs encoder) | concept exponents (paired) | "
          "true recall | oracle |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for eval_seed in args.eval_seeds:
        oracle = final_recall(policy_name="oracle", num_concepts=c, students=n, interactions=steps, seed=eval_seed,
                              encoder=encoder, family=args.family).mean()
        for target in args.targets:
            plain = run(eval_seed, target=target, eta=0.0, truth=False)
            offset = run(eval_seed, target=target, eta=args.eta, truth=False)
            scaled = run(eval_seed, config=with_exponents, target=target, eta=0.0, truth=False)
            truth = run(eval_seed, target=target, eta=0.0, truth=True)
            print(f"| {eval_seed} | {target:g} | {plain.mean():.4f} | {offset.mean():.4f} "
                  f"({(offset - plain).mean():+.4f}) | {scaled.mean():.4f} ({(scaled - plain).mean():+.4f}) | "
                  f"{truth.mean():.4f} | {oracle:.4f} |", flush=True)


if __name__ == "__main__":
    main()
