"""Experiment (issue 21): how much could choosing target_recall's target per learner add, at best? The Decision
Transformer is trained on a mix whose learners each follow target_recall at their own target; what conditioning can
at most do with that log is pick, for the learner in front of it, the target that suits that learner. This bounds
that pick from above, with knowledge no policy has.

Each held-out student of each family is taught by target_recall at each of ``--targets`` under ``--draws`` K
independent draws of the review outcomes and grades (the same student: same traits, same review times), the
targets are chosen on those K draws (A) and scored on one more (B). Per family, seed:

- the best fixed target, chosen on A's mean and scored on B;
- the per-student best target, chosen on that student's A and scored on B: a hindsight choice per learner (it knows
  how each target turned out for this very student), freed of its own luck by scoring on another draw;
- where the rest of the gap lies, on the scoring draw: target_recall reading the simulator's true recall instead
  of the encoder's estimate (best fixed and per-student targets, chosen as above), target_recall on a per-learner
  calibrated estimate (a stability scale per learner, its posterior updated by the learner's own outcomes; at the
  best fixed target), the planner (the encoder's one-step lookahead), lowest_recall and the oracle (the simulator's
  expected gain, what only the simulator knows).

``--cell-calibration``: also two estimates learned per (learner, concept) cell from that learner's own outcomes,
each at its own best fixed target (chosen on A, scored on B): a stability-scale posterior per cell (as the
per-learner one) and an Elo-style logit correction (a learner offset and a cell offset; Pelanek 2016).

If the per-student choice adds little over the best fixed target, no selection among the mix's targets (return
conditioning, ESPER-like clusters, a behaviour label) can close much of the lowest_recall-to-oracle gap.

    python bench/target_ceiling.py [--seed 3] [--eval-seeds 99 2024] [--families builtin fsrs6 actr hlr]
        [--targets 0.15 0.25 0.35 0.45 0.55 0.65] [--draws 1] [--calibration-prior-sd 0.8] [--concept-exponents]
        [--cell-calibration] [--elo-alpha 1] [--elo-beta 0.05] [--elo-learner 1] [--threads 1] [--json FILE]

The encoder is the one fitted to ``--seed``'s default training data (as a trained policy would serve with).
An experiment, not a product feature; the reporting seed 1234 is refused.
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

# The stream of draw B's outcome and grade dice (any value other than the cohort's own streams).
REDRAW_STREAM = 9_173


def main() -> None:
    import django

    django.setup()
    import training_recipe as recipe
    from training.pipeline import build_synthetic_dataset
    from threadpoolctl import threadpool_limits

    from training.rl.encoder import EncoderConfig
    from training.rl.evaluation import closed_loop_final_recall, gap_closed
    from training.rl.policies import TargetRecallPolicy, _reviewed, make_policy, never_reviewed_first
    from training.rl.simulator import policy_rng
    from training.rl.students import make_cohort, parse_families

    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--families", nargs="+", default=["builtin", "fsrs6", "actr", "hlr"])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.15, 0.25, 0.35, 0.45, 0.55, 0.65])
    parser.add_argument("--draws", type=int, default=1,
                        help="outcome draws the targets are chosen on (default 1); scored on one more")
    parser.add_argument("--calibration-prior-sd", type=float, default=0.8,
                        help="the calibrated policy's prior sd of log stability scale (default 0.8)")
    parser.add_argument("--concept-exponents", action="store_true")
    parser.add_argument("--cell-calibration", action="store_true",
                        help="also the per-cell stability scale and the Elo logit calibration, each at its best "
                             "fixed target")
    parser.add_argument("--elo-alpha", type=float, default=1.0, help="Elo's K(n) = alpha / (1 + beta n) (default 1)")
    parser.add_argument("--elo-beta", type=float, default=0.05, help="(default 0.05)")
    parser.add_argument("--elo-learner", type=float, default=1.0,
                        help="weight of the Elo learner offset (0: the cell offsets only)")
    parser.add_argument("--json", metavar="FILE", help="append the figures as one JSON line")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    try:
        families = parse_families(args.families)
    except ValueError as exc:
        parser.error(str(exc))
    if any(not 0.0 < t < 1.0 for t in args.targets) or len(args.targets) < 2:
        parser.error("--targets: at least two recall targets, each in (0, 1)")
    if args.draws < 1 or args.threads < 1:
        parser.error("--draws and --threads: at least 1")
    threadpool_limits(limits=args.threads)  # NumPy's BLAS pool, for the rest of the process
    concepts, interactions, students = recipe.CONCEPTS, recipe.INTERACTIONS, recipe.STUDENTS

    started = time.perf_counter()
    dataset = build_synthetic_dataset(num_users=recipe.USERS, interactions=interactions, concepts=concepts,
                                      seed=args.seed, concept_exponents=args.concept_exponents)
    encoder = EncoderConfig.from_dict(dataset.encoder)
    print(f"## target_recall's target chosen per learner: training seed {args.seed}"
          + (", concept recall exponents" if args.concept_exponents else "")
          + f" (encoder fitted in {time.perf_counter() - started:.0f} s)\n", flush=True)

    class TargetRecallOnTruth(TargetRecallPolicy):
        """target_recall reading the simulator's true recall instead of the encoder's estimate."""

        name = "target_recall_on_truth"
        uses_true_recall = True

        def select(self, obs):
            seen = _reviewed(obs)
            return never_reviewed_first(seen, lambda done: np.argmin(np.abs(obs.true_recall[done] - self.target),
                                                                     axis=1))

    decay = float(encoder.parameters[20]) if encoder.estimator == "fsrs6" else None
    scales = np.exp(np.linspace(np.log(0.15), np.log(6.0), 25))  # the stability scales m of the grid
    prior = -0.5 * (np.log(scales) / args.calibration_prior_sd) ** 2  # log-normal, over the grid

    class TargetRecallCalibrated(TargetRecallPolicy):
        """target_recall on a per-learner calibration of the estimate: each learner's stability is the encoder's
        times a scale m, R_m = (1 + (R^(-1/w20) - 1) / m)^(-w20) (FSRS-6's curve, the same elapsed time), with a
        posterior over a grid of m (log-normal prior, sd ``--calibration-prior-sd``) updated by each outcome of a
        concept reviewed before; the estimate is the posterior mean of R_m."""

        name = "target_recall_calibrated"

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.log_posterior = np.tile(prior, (self.num_learners, 1))
            self.pending = None

        def select(self, obs):
            seen, learners = _reviewed(obs), np.arange(self.num_learners)
            x = np.clip(obs.recall_of(learners), 1e-6, 1.0)[..., None] ** (-1.0 / decay) - 1.0
            by_scale = (1.0 + x / scales) ** (-decay)  # [L, C, G]
            recall = self._posterior_mean(by_scale)
            choice = never_reviewed_first(seen, lambda done: np.argmin(np.abs(recall[done] - self.target), axis=1))
            self.pending = (choice, np.clip(by_scale[learners, choice], 1e-4, 1 - 1e-4), seen[learners, choice])
            return choice

        def _posterior_mean(self, by_scale):
            """The estimate [L, C]: R_m [L, C, G] averaged over each learner's posterior of m."""
            weights = np.exp(self.log_posterior - self.log_posterior.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            return np.einsum("mcg,mg->mc", by_scale, weights)

        def observe(self, *, concepts, t, correct, rewards):
            choice, p, was_seen = self.pending
            self._add(choice, np.where(was_seen[:, None], np.where(correct[:, None], np.log(p), np.log1p(-p)), 0.0))

        def _add(self, choice, log_likelihood):
            """An outcome's log-likelihood [L, G] over the grid, into each learner's posterior."""
            self.log_posterior += log_likelihood

    class TargetRecallCellScale(TargetRecallCalibrated):
        """target_recall on a per-learner-and-concept calibration: TargetRecallCalibrated's stability scale m, with
        a posterior per (learner, concept) cell over the same grid and prior, updated only by that cell's outcomes."""

        name = "target_recall_cell_scale"

        def __init__(self, **kwargs):
            TargetRecallPolicy.__init__(self, **kwargs)
            self.log_posterior = np.tile(prior, (self.num_learners, self.num_concepts, 1))
            self.pending = None

        def _posterior_mean(self, by_scale):
            weights = np.exp(self.log_posterior - self.log_posterior.max(axis=2, keepdims=True))
            weights /= weights.sum(axis=2, keepdims=True)
            return (by_scale * weights).sum(axis=2)

        def _add(self, choice, log_likelihood):
            self.log_posterior[np.arange(self.num_learners), choice] += log_likelihood

    class TargetRecallElo(TargetRecallPolicy):
        """target_recall on an Elo-style calibration of the estimate's logit (Pelanek 2016, "Applications of the
        Elo rating system in adaptive educational systems", Computers & Education 98): p = sigmoid(logit R + a_l +
        b_lc), a learner offset and a learner-concept offset, each moved by K(n) (y - p) after an outcome of a
        concept reviewed before, K(n) = alpha / (1 + beta n), n the updates so far (Pelanek's uncertainty function,
        alpha 1, beta 0.05 as there; ``--elo-alpha``, ``--elo-beta``)."""

        name = "target_recall_elo"

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.learner_offset = np.zeros(self.num_learners)
            self.cell_offset = np.zeros((self.num_learners, self.num_concepts))
            self.learner_n = np.zeros(self.num_learners)
            self.cell_n = np.zeros((self.num_learners, self.num_concepts))
            self.pending = None

        def select(self, obs):
            seen, learners = _reviewed(obs), np.arange(self.num_learners)
            r = np.clip(obs.recall_of(learners), 1e-4, 1 - 1e-4)
            logit = np.log(r) - np.log1p(-r) + args.elo_learner * self.learner_offset[:, None] + self.cell_offset
            recall = 1.0 / (1.0 + np.exp(-logit))
            choice = never_reviewed_first(seen, lambda done: np.argmin(np.abs(recall[done] - self.target), axis=1))
            self.pending = (choice, recall[learners, choice], seen[learners, choice])
            return choice

        def observe(self, *, concepts, t, correct, rewards):
            choice, p, was_seen = self.pending
            learners = np.arange(self.num_learners)
            error = np.where(was_seen, correct.astype(np.float64) - p, 0.0)
            k = args.elo_alpha / (1.0 + args.elo_beta * self.learner_n)
            self.learner_offset += k * error
            k = args.elo_alpha / (1.0 + args.elo_beta * self.cell_n[learners, choice])
            self.cell_offset[learners, choice] += k * error
            self.learner_n += was_seen
            self.cell_n[learners, choice] += was_seen

    def run(family: str, eval_seed: int, policy_name: str, *, draw: int, target: float | None = None):
        """Per-student final recall [students] of policy_name on draw ``draw`` of the outcomes (0: the cohort's
        own dice; k > 0: the same students and review times with other outcome and grade dice)."""
        cohort = make_cohort(family=family, num_students=students, num_concepts=concepts, interactions=interactions,
                             seed=eval_seed, held_out=True)
        if draw:
            rng = np.random.default_rng([eval_seed, REDRAW_STREAM, draw, *family.encode()])
            cohort._outcome_u = rng.random(cohort._outcome_u.shape)
            cohort._grade_u = rng.random(cohort._grade_u.shape)
        rng = policy_rng(seed=eval_seed, held_out=True, name=policy_name)
        if policy_name in own:
            policy = own[policy_name](num_learners=students, num_concepts=concepts, rng=rng)
        else:
            policy = make_policy(policy_name, num_learners=students, num_concepts=concepts, rng=rng)
        if target is not None:
            policy.target = target
        return closed_loop_final_recall(cohort=cohort, policy=policy, encoder=encoder)

    own = {cls.name: cls for cls in (TargetRecallOnTruth, TargetRecallCalibrated, TargetRecallCellScale,
                                      TargetRecallElo)}

    def choose_and_score(family: str, eval_seed: int, policy_name: str):
        """(index of the best fixed target, its per-student recall on the scoring draw, the per-student best
        targets' recall on the scoring draw): targets chosen on draws 0..K-1, scored on draw K."""
        chosen = np.mean([np.stack([run(family, eval_seed, policy_name, draw=k, target=t) for t in targets])
                          for k in range(args.draws)], axis=0)
        scored = np.stack([run(family, eval_seed, policy_name, draw=args.draws, target=t) for t in targets])
        fixed = int(np.argmax(chosen.mean(axis=1)))
        return fixed, scored, scored[np.argmax(chosen, axis=0), np.arange(students)]

    targets = np.asarray(args.targets)
    record = {"seed": args.seed, "concept_exponents": args.concept_exponents, "targets": args.targets, "eval": {}}
    print("| family | eval seed | lowest_recall | target_recall 0.25 | best fixed target (on A) | its recall (B) | "
          "per-learner best (B) | per-learner - best fixed | 95% CI | gap closed by per-learner | calibrated - "
          "best fixed [95% CI] | planner | "
          "target_recall on truth, best fixed | on truth, per-learner | oracle |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|")
    for family in families:
        for eval_seed in args.eval_seeds:
            fixed, b, per_learner = choose_and_score(family, eval_seed, "target_recall")
            truth_fixed, truth_b, truth_per_learner = choose_and_score(family, eval_seed, TargetRecallOnTruth.name)
            lowest = run(family, eval_seed, "lowest_recall", draw=args.draws)
            oracle = run(family, eval_seed, "oracle", draw=args.draws)
            planner = run(family, eval_seed, "planner", draw=args.draws)
            calibrated = (run(family, eval_seed, TargetRecallCalibrated.name, draw=args.draws, target=targets[fixed])
                          if decay is not None else np.full(students, np.nan))
            dc = calibrated - b[fixed]
            default = b[int(np.argmin(np.abs(targets - TargetRecallPolicy.target)))]
            d = per_learner - b[fixed]
            closed = gap_closed(dt=per_learner.mean(), lowest_recall=lowest.mean(), oracle=oracle.mean(),
                                others=(b[fixed].mean(), planner.mean(), truth_b[truth_fixed].mean(),
                                        truth_per_learner.mean()))
            shown = "-" if closed is None else f"{100 * closed:.1f}%"  # None: the oracle is no ceiling here
            print(f"| {family} | {eval_seed} | {lowest.mean():.4f} | {default.mean():.4f} | {targets[fixed]:g} | "
                  f"{b[fixed].mean():.4f} | {per_learner.mean():.4f} | {d.mean():+.4f} | [{recipe._low(d):+.4f}, "
                  f"{recipe._high(d):+.4f}] | {shown} | {dc.mean():+.4f} [{recipe._low(dc):+.4f}, "
                  f"{recipe._high(dc):+.4f}] | {planner.mean():.4f} | "
                  f"{truth_b[truth_fixed].mean():.4f} | {truth_per_learner.mean():.4f} | {oracle.mean():.4f} |",
                  flush=True)
            if args.cell_calibration:
                cells = {}
                # the cell scale reads FSRS-6's curve (its decay); Elo corrects any estimate's logit
                for cls in (TargetRecallCellScale, TargetRecallElo) if decay is not None else (TargetRecallElo,):
                    c_fixed, c_b, _ = choose_and_score(family, eval_seed, cls.name)
                    dcell = c_b[c_fixed] - b[fixed]
                    cells[cls.name] = {"best_fixed_target": float(targets[c_fixed]),
                                       "recall": round(float(c_b[c_fixed].mean()), 4),
                                       "minus_best_fixed": round(float(dcell.mean()), 4),
                                       "by_target_b": [round(float(x), 4) for x in c_b.mean(axis=1)]}
                    print(f"|   {cls.name} | {eval_seed} | best fixed target {targets[c_fixed]:g}: "
                          f"{c_b[c_fixed].mean():.4f}, minus target_recall's best fixed {dcell.mean():+.4f} "
                          f"[{recipe._low(dcell):+.4f}, {recipe._high(dcell):+.4f}]; by target "
                          + " ".join(f"{x:.4f}" for x in c_b.mean(axis=1)) + " |", flush=True)
            record["eval"].setdefault(family, {})[eval_seed] = {
                "lowest_recall": round(float(lowest.mean()), 4), "oracle": round(float(oracle.mean()), 4),
                "by_target_b": [round(float(x), 4) for x in b.mean(axis=1)],
                "best_fixed_target": float(targets[fixed]), "per_learner_b": round(float(per_learner.mean()), 4),
                "planner": round(float(planner.mean()), 4), "calibrated": round(float(calibrated.mean()), 4),
                "truth_by_target_b": [round(float(x), 4) for x in truth_b.mean(axis=1)],
                "truth_per_learner_b": round(float(truth_per_learner.mean()), 4),
                **({"cell_calibration": cells} if args.cell_calibration else {})}
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        recipe.append_json_line(args.json, record)


if __name__ == "__main__":
    main()
