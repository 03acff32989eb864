"""Experiment (issue 21): does policy-gradient fine-tuning in the student families lift the Decision Transformer
above its teachers?

Every earlier attempt here (return conditioning, advantage conditioning and weights, critics, online fine-tuning on
hindsight returns, privileged teachers) trained the model to imitate episodes, its own or its teachers'; none can
add a choice that no episode shows. This one optimises the policy's own objective: the product's policy-gradient
stage (``training/rl/policy_gradient.py``, ``train_crl_policy --policy-gradient-rounds``: REINFORCE with the
leave-one-out baseline of several samples per student, in training-domain students of ``--families``), here after
the default offline training (the default data and recipe as ``training_recipe.py``, or ``--offline-dir``'s saved
model) with DTLite evaluated greedily, as it serves, every ``--eval-every`` rounds on the held-out validation
students, paired against the baselines. Each round also prints the sampled policy's return minus target_recall's on
the same training students (the same cohort and dice).

The reporting seed is refused. ``--offline-families``: the offline training cohort's families (leave-one-family-out:
e.g. ``builtin,fsrs6,hlr`` with ``--families builtin,fsrs6,hlr --eval-family actr,builtin``).

    OMP_NUM_THREADS=1 python bench/policy_gradient.py [--seed 3] [--eval-seeds 99 2024] [--threads 1]
        [--rounds N] [--students N] [--samples N] [--temperature T] [--learning-rate LR] [--updates N]
        [--steps-per-episode N] [--families builtin] [--mixed-rounds] [--selection mean|worst_margin] [--randomised-curricula] [--offline-families F] [--eval-family F] [--eval-every 5]
        [--offline-dir DIR] [--json FILE] [--save-dir DIR]

Defaults: ``PolicyGradientConfig``'s (the product's).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import numpy as np  # noqa: E402

def reference_returns(encoder, *, family: str, students: int, seed: int,
                      curriculum_seed: int | None = None) -> np.ndarray:
    """target_recall's mean final true recall on a round's students (the same cohort and dice), float64 [students]:
    where the sampled policy stands against the best teacher, round by round. ``family``: one family, or a mixed
    round's "a,b,..." (each family's share of the students, ``family_shares``, concatenated in that order, as the
    rollouts); ``curriculum_seed``: the round's curriculum with randomised curricula (None: the default one)."""
    from training.rl.evaluation import final_recall
    import training_recipe as recipe

    from training.rl.policy_gradient import family_shares
    from training.rl.students import SimulatorConfig

    families = family.split(",")  # a mixed round's: each family's share of the students, in order
    return np.concatenate([
        final_recall(policy_name="target_recall", num_concepts=recipe.CONCEPTS, students=share,
                     interactions=recipe.INTERACTIONS, seed=seed, encoder=encoder, family=name, held_out=False,
                     simulator=None if curriculum_seed is None else SimulatorConfig(curriculum_seed=curriculum_seed))
        for name, share in zip(families, family_shares(students, len(families)))])


def main() -> None:
    import django

    django.setup()
    import torch

    import online_finetune as online
    import training_recipe as recipe
    from training.pipeline import TRAIN_DEFAULTS, build_synthetic_dataset, train_and_export
    from training.rl.artifacts import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE
    from training.rl.checkpoint import read_checkpoint
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.dtlite import DTLite
    from training.rl.encoder import EncoderConfig
    from training.rl.policy_gradient import (
        CURRICULUM_SEED_OFFSET, ROUND_SEED_BASE, SELECTIONS, PolicyGradientConfig, fine_tune, lite_files_of,
    )
    from training.rl.trainer import training_autocast
    from training.spec import TrainingSpec

    parser = recipe.experiment_parser(__doc__)
    defaults = PolicyGradientConfig()
    parser.add_argument("--rounds", type=int, default=defaults.rounds,
                        help=f"policy-gradient rounds (default {defaults.rounds})")
    parser.add_argument("--students", type=int, default=defaults.students,
                        help=f"training students a round (default {defaults.students})")
    parser.add_argument("--samples", type=int, default=defaults.samples,
                        help=f"the DT's episodes per student (default {defaults.samples}, >= 2)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help="rollouts sample from softmax(logits / T), and the gradient is of that policy "
                             f"(default {defaults.temperature:g})")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                        help=f"AdamW's rate, constant (default {defaults.learning_rate:g})")
    parser.add_argument("--updates", type=int, default=defaults.updates,
                        help=f"optimiser steps a round (default {defaults.updates})")
    parser.add_argument("--steps-per-episode", type=int, default=defaults.steps_per_episode,
                        help=f"later steps per episode in the gradient (default {defaults.steps_per_episode}; the "
                             "first context is whole)")
    parser.add_argument("--families", default="builtin",
                        help="the rollout students' families, comma-separated, one a round in turn, or all in each "
                             "round with --mixed-rounds (default builtin; "
                             "fitted: the FSRS-6 students the offline model's encoder describes)")
    parser.add_argument("--selection", choices=SELECTIONS, default=defaults.selection,
                        help=f"how the kept round is chosen (default {defaults.selection})")
    parser.add_argument("--randomised-curricula", action="store_true",
                        help="each round's students practise a curriculum of their own (other concept difficulties)")
    parser.add_argument("--mixed-rounds", action="store_true",
                        help="every family every round, the students split between them (default: one a round)")
    parser.add_argument("--offline-families", metavar="F",
                        help="the offline training cohort's families (build_synthetic_dataset's; default built-in)")
    parser.add_argument("--eval-family", metavar="FAMILIES",
                        help="held-out students' families, comma-separated (default the built-in students; fitted: "
                             "as --families)")
    parser.add_argument("--eval-every", type=int, default=5, help="evaluate every N rounds (default 5)")
    parser.add_argument("--offline-dir", metavar="DIR", help="keep / reuse the offline model's files here")
    parser.add_argument("--json", metavar="FILE", help="append the run's figures as one JSON line")
    parser.add_argument("--save-dir", metavar="DIR", help="write the kept weights' DTLite pair here (for inspection)")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    eval_families = [None if f == "builtin" else f for f in (args.eval_family or "builtin").split(",")]

    dataset = build_synthetic_dataset(num_users=recipe.USERS, interactions=recipe.INTERACTIONS,
                                      concepts=recipe.CONCEPTS, seed=args.seed, families=args.offline_families)
    offline_dir = Path(args.offline_dir) if args.offline_dir else Path(f"/tmp/bench-pg-offline-{args.seed}")
    if not (offline_dir / CHECKPOINT_FILE).exists():
        train_and_export(dataset=dataset, output_dir=offline_dir, epochs=TrainingSpec.default("epochs"),
                         batch_size=TrainingSpec.default("batch_size"), seed=args.seed, no_cuda=True,
                         train_config=replace(TRAIN_DEFAULTS, num_threads=args.threads))
    saved = read_checkpoint(offline_dir / CHECKPOINT_FILE)
    if (saved.get("extra") or {}).get("seed") != args.seed or saved.get("encoder") != dataset.encoder:
        parser.error(f"--offline-dir {offline_dir}: holds another seed's or dataset's model")
    target = float(saved["target_return"])
    lite = DTLite.load(offline_dir / WEIGHTS_FILE, offline_dir / CONFIG_FILE)
    encoder = EncoderConfig.from_dict(lite.config["encoder"])
    model = DecisionTransformer(DTConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    model.eval()
    try:
        pg_config = PolicyGradientConfig(
            rounds=args.rounds, students=args.students, samples=args.samples, temperature=args.temperature,
            learning_rate=args.learning_rate, updates=args.updates, steps_per_episode=args.steps_per_episode,
            grad_clip=TRAIN_DEFAULTS.grad_clip, families=tuple(args.families.split(",")),
            mixed_rounds=args.mixed_rounds, selection=args.selection,
            randomised_curricula=args.randomised_curricula, interactions=recipe.INTERACTIONS)
    except ValueError as exc:
        parser.error(str(exc))

    load = os.getloadavg()
    print(f"## policy gradient (RLOO): training seed {args.seed}, {args.rounds} rounds x {args.students} students x "
          f"{args.samples} samples ({args.families}{', mixed rounds' if args.mixed_rounds else ''}; selection "
          f"{args.selection}{'; randomised curricula' if args.randomised_curricula else ''}), temperature {args.temperature:g}, lr {args.learning_rate:g}, "
          f"{args.updates} updates a round, {args.steps_per_episode} later steps an episode; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, load {load[0]:.1f} at the start\n", flush=True)

    values: dict = {}
    with limited_threads(EVALUATION_THREADS):
        for family in eval_families:
            recipe.evaluate_seeds(values.setdefault(family, {}), eval_seeds=args.eval_seeds, model=lite,
                                  encoder=encoder, family=family)
    record = {"seed": args.seed, "args": vars(args), "target_return": target, "rounds_figures": []}

    def report(round_: int, lite_now) -> dict:
        figures = {}
        for family in eval_families:
            by_seed = {}
            with limited_threads(EVALUATION_THREADS):
                for eval_seed in args.eval_seeds:
                    by_seed[eval_seed] = (values[family][eval_seed]["dt"] if round_ == 0 else
                                          recipe.final_recall_of(lite_now, encoder=encoder, eval_seed=eval_seed,
                                                                 family=family))
            figures[family or "builtin"] = online.print_table(
                values[family], by_seed, title=f"### round {round_}, {family or 'builtin'} students "
                                               f"({time.perf_counter() - started:.0f} s)")
        return figures

    record["rounds_figures"].append({"round": 0, "eval": report(0, lite)})
    print("\nthe offline model's selection score is computed before round 1 (printed at the end)\n", flush=True)
    clock = [time.perf_counter()]

    def on_round(round_: int, figures: dict, lite_now) -> None:
        seed = ROUND_SEED_BASE * round_ + args.seed
        reference = reference_returns(encoder, family=figures["family"], students=args.students, seed=seed,
                                      curriculum_seed=seed + CURRICULUM_SEED_OFFSET if args.randomised_curricula
                                      else None)
        now = time.perf_counter()
        print(f"round {round_} ({figures['family']}): sampled return {figures['sampled_return']:.4f}, - target_recall "
              f"on the same students {figures['sampled_return'] - reference.mean():+.4f} (sd between samples "
              f"{figures['sd_between_samples']:.4f}), loss {figures['loss']:+.4f}, grad norm "
              f"{figures['grad_norm']:.3f}" + (f", selection score {figures['selection_score']:.4f}"
                                              if "selection_score" in figures else "")
              + f"; {now - clock[0]:.0f} s", flush=True)
        clock[0] = now
        entry = dict(figures, target_recall_return=round(float(reference.mean()), 5))
        if round_ % args.eval_every == 0 or round_ == args.rounds:
            entry["eval"] = report(round_, lite_now)
            clock[0] = time.perf_counter()
        record["rounds_figures"].append(entry)

    torch.manual_seed(args.seed)
    history = fine_tune(model, concept_keys=list(dataset.concept_keys), encoder=dataset.encoder, target_return=target,
              config=pg_config, seed=args.seed, autocast=training_autocast("cpu", cpu_bfloat16=None),
              on_round=on_round)
    kept = next(h["round"] for h in history if h.get("kept"))
    print("\nselection scores (training-domain students): "
          + ", ".join(f"{h['round']}: {h['selection_score']:.4f}" for h in history if "selection_score" in h)
          + f"; kept round {kept}")
    record["selection"] = {"scores": {h["round"]: h["selection_score"] for h in history if "selection_score" in h},
                           "kept": kept}
    files = lite_files_of(model, concept_keys=list(dataset.concept_keys), encoder=dataset.encoder,
                          target_return=target)
    record["kept_eval"] = report(kept, DTLite.load(files[WEIGHTS_FILE], files[CONFIG_FILE]))
    if args.save_dir:
        Path(args.save_dir).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (Path(args.save_dir) / name).write_bytes(data)
    recipe.finish(record, started=started, json_path=args.json)


if __name__ == "__main__":
    main()
