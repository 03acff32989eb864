"""Which training recipe for the default policy (issue 22: the default `train_crl_policy` in at most 5 minutes on 2
CPU cores, policy quality unchanged or better)? One recipe, one training seed, per run: the default training data
(500 built-in students x 100 reviews, 20 concepts, the default behaviour mix, as ``build_synthetic_dataset``), trained
with the recipe, timed (wall and process CPU time, optimiser steps/s), then DTLite and the baselines on 200 held-out
validation students of each evaluation seed, with paired differences. Prints Markdown and, with ``--json``, appends
one JSON line per run (to compare recipes run in separate processes).

    python bench/training_recipe.py [--seed 3] [--eval-seeds 99 2024] [--epochs 10] [--batch-size 64]
        [--learning-rate 3e-4] [--coverage 4] [--lr-schedule constant] [--min-lr-ratio 0.1] [--cpu-bfloat16 | --cpu-float32]
        [--attention-window W] [--dropout P] [--hidden-dim H] [--layers L] [--heads N] [--families F] [--eval-family F] [--threads N] [--target-quantiles Q [Q ...]] [--concept-exponents]
        [--varied-target-range LOW HIGH] [--policy-mix NAME=SHARE,...] [--json FILE]

``--target-quantiles``: the trained model is also evaluated conditioned on other target returns, each that quantile of
the training episodes' returns (``trainer.target_return``; the recipe's own is TrainConfig.target_return_quantile,
0.9): the weights do not depend on it, so one training run serves every quantile.

Defaults: the pipeline's TRAIN_DEFAULTS and the spec's epochs / batch size. Choose on validation seeds (training 3
and 7, held-out 99 and 2024); ``--eval-seeds`` refuses 1234, the reporting seed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONCEPTS, USERS, INTERACTIONS, STUDENTS = 20, 500, 100, 200
REPORTING_SEED = 1234
# the best behaviour policy of the default mix, then every heuristic of issue 21's every-family target: the best
# heuristic differs by family (on validation seed 99: lowest_recall on FSRS-6, round_robin on ACT-R, leitner on HLR)
BASELINES = ("target_recall", "lowest_recall", "round_robin", "leitner", "random")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
    import django

    django.setup()
    import torch

    from training.pipeline import TRAIN_DEFAULTS, build_synthetic_dataset, train_and_export
    from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
    from training.rl.dtlite import DTLite
    from training.rl.encoder import EncoderConfig
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.spec import TrainingSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3, help="training seed (default 3)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[99, 2024],
                        help="held-out validation seeds (default 99 2024; as the other issue-21 experiments)")
    parser.add_argument("--epochs", type=int, default=TrainingSpec.default("epochs"))
    parser.add_argument("--batch-size", type=int, default=TrainingSpec.default("batch_size"))
    parser.add_argument("--learning-rate", type=float, default=TRAIN_DEFAULTS.learning_rate)
    parser.add_argument("--coverage", type=float, default=TRAIN_DEFAULTS.coverage)
    parser.add_argument("--lr-schedule", default=TRAIN_DEFAULTS.lr_schedule)
    parser.add_argument("--min-lr-ratio", type=float, default=TRAIN_DEFAULTS.min_lr_ratio)
    arithmetic = parser.add_mutually_exclusive_group()
    arithmetic.add_argument("--cpu-bfloat16", dest="cpu_bfloat16", action="store_const", const=True, default=None,
                            help="train under bfloat16 autocast on the CPU (TrainConfig.cpu_bfloat16 True)")
    arithmetic.add_argument("--cpu-float32", dest="cpu_bfloat16", action="store_const", const=False,
                            help="train in float32 on the CPU (TrainConfig.cpu_bfloat16 False); default: bfloat16 "
                                 "autocast where the CPU has bfloat16 matrix units")
    parser.add_argument("--attention-window", type=int, metavar="W",
                        help="local attention over the last W tokens (default: the widest exact window, as "
                             "train_crl_policy; 0: full attention)")
    parser.add_argument("--dropout", type=float, metavar="P", help="the model's dropout (default DTConfig's, 0.1)")
    parser.add_argument("--hidden-dim", type=int, metavar="H", help="the model's width (default DTConfig's)")
    parser.add_argument("--layers", type=int, metavar="L", help="transformer blocks (default DTConfig's)")
    parser.add_argument("--heads", type=int, metavar="N", help="attention heads (default DTConfig's)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="PyTorch threads for training (default: PyTorch's own)")
    parser.add_argument("--target-quantiles", type=float, nargs="+", metavar="Q",
                        help="also evaluate DTLite conditioned on these quantiles of the episode returns")
    parser.add_argument("--concept-exponents", action="store_true",
                        help="fit the encoder's per-concept recall exponents too (fit_encoder_config's "
                             "concept_exponents; off by default)")
    parser.add_argument("--varied-target-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="the behaviour mix's varied_target_recall targets (default policies.py's 0.15 0.45; set "
                             "in this process: the default cohort is simulated here, not in worker processes)")
    parser.add_argument("--families", metavar="FAMILIES",
                        help="the training cohort's student families, as train_crl_policy --families (default: the "
                             "built-in students); e.g. builtin,fsrs6,actr to hold hlr out")
    parser.add_argument("--eval-family", metavar="FAMILIES",
                        help="the held-out students' family (default: the built-in students), e.g. the one held out; "
                             "several comma-separated: one table each, e.g. actr,builtin")
    parser.add_argument("--policy-mix", metavar="NAME=SHARE,...",
                        help="the training cohort's behaviour mix instead of policies.DEFAULT_POLICY_MIX (shares are "
                             "rescaled to sum to 1), e.g. random=0.15,leitner=0.15,varied_target_recall=0.4,"
                             "noisy_varied_target_recall=0.15,round_robin=0.15; set in this process, as "
                             "--varied-target-range")
    parser.add_argument("--no-action-tokens", action="store_true",
                        help="train with the action embedding held at zero (each action token carries only its "
                             "timestep), so that the model cannot read which teacher it imitates from its own past "
                             "actions (the copycat problem of behaviour cloning from histories, Wen et al. 2020); "
                             "the export carries the zero embedding, so DTLite serves it unchanged")
    parser.add_argument("--json", metavar="FILE", help="append the run's figures as one JSON line")
    args = parser.parse_args()
    eval_seeds = args.eval_seeds
    if args.no_action_tokens:
        without_action_tokens()
    if REPORTING_SEED in eval_seeds:
        parser.error(f"--eval-seeds: {REPORTING_SEED} is the reporting seed; choose on others")

    config = replace(TRAIN_DEFAULTS, learning_rate=args.learning_rate, coverage=args.coverage,
                     lr_schedule=args.lr_schedule, min_lr_ratio=args.min_lr_ratio, cpu_bfloat16=args.cpu_bfloat16,
                     num_threads=args.threads)
    set_varied_target_range(parser, args.varied_target_range)
    set_policy_mix(parser, args.policy_mix)
    architecture = {name: value for name, value in (("hidden_dim", args.hidden_dim), ("num_layers", args.layers),
                                                    ("num_heads", args.heads)) if value is not None}
    load = os.getloadavg()
    started = time.perf_counter()
    dataset = build_synthetic_dataset(num_users=USERS, interactions=INTERACTIONS, concepts=CONCEPTS, seed=args.seed,
                                      concept_exponents=args.concept_exponents, families=args.families)
    data_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = train_and_export(dataset=dataset, output_dir=tmp, epochs=args.epochs, batch_size=args.batch_size,
                                   seed=args.seed, no_cuda=True, train_config=config,
                                   attention_window=args.attention_window, dropout=args.dropout,
                                   architecture=architecture)
        train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
        model = DTLite.load(Path(tmp) / WEIGHTS_FILE, Path(tmp) / CONFIG_FILE)
    encoder = EncoderConfig.from_dict(model.config["encoder"])  # the fitted encoder the policy serves with
    evaluation = time.perf_counter()
    eval_families = args.eval_family.split(",") if args.eval_family else [None]
    by_family: dict[str | None, dict[int, dict[str, np.ndarray]]] = {family: {} for family in eval_families}
    with limited_threads(EVALUATION_THREADS):  # as the pipeline's evaluation: one thread (cpu_threads.py)
        for family in eval_families:
            evaluate_seeds(by_family[family], eval_seeds=eval_seeds, model=model, encoder=encoder, family=family)
    values = by_family[eval_families[0]]
    evaluation_s = time.perf_counter() - evaluation
    steps = outcome.hardware["optimizer_steps"]
    recipe = (f"epochs {args.epochs}, batch {args.batch_size}, lr {args.learning_rate:g}, coverage {args.coverage:g}, "
              f"{args.lr_schedule}" + (f" (floor {args.min_lr_ratio:g})" if args.lr_schedule != "constant" else "")
              + f", {outcome.hardware.get('dtype', 'float32')}"
              + "".join(f", {name.replace('_', ' ')} {value}" for name, value in architecture.items())
              + (f", attention window {args.attention_window}" if args.attention_window is not None else "")
              + (f", dropout {args.dropout:g}" if args.dropout is not None else "")
              + (", concept recall exponents" if args.concept_exponents else "")
              + (f", families {args.families}" if args.families else "")
              + (f", evaluated on {args.eval_family} students" if args.eval_family else "")
              + (f", behaviour mix {args.policy_mix}" if args.policy_mix else "")
              + (", no action tokens" if args.no_action_tokens else "")
              + (f", varied targets {args.varied_target_range[0]:g}-{args.varied_target_range[1]:g}"
                 if args.varied_target_range else ""))
    print(f"## {recipe}: training seed {args.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start\n")
    print(f"data {data_s:.0f} s; training {train_wall:.0f} s wall, {train_cpu:.0f} s process CPU, {steps} optimiser "
          f"steps, {outcome.hardware['steps_per_s']:.2f} steps/s ({steps * args.batch_size / train_wall:.0f} "
          f"windows/s); final loss {outcome.final_loss:.4f}; evaluation {evaluation_s:.0f} s\n")
    print("| eval seed | policy | mean final recall | 95% CI | dt - policy (paired) | 95% CI |")
    print("|---:|---|---:|---|---:|---|")
    record = {"recipe": recipe, "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
              "learning_rate": args.learning_rate, "coverage": args.coverage, "lr_schedule": args.lr_schedule,
              "min_lr_ratio": args.min_lr_ratio, "cpu_bfloat16": args.cpu_bfloat16,
              "attention_window": args.attention_window, "dropout": args.dropout, "architecture": architecture,
              "model": {name: model.config.get(name) for name in ("hidden_dim", "num_layers", "num_heads",
                                                                  "attention_window")},  # as trained
              "families": args.families, "eval_family": args.eval_family, "policy_mix": args.policy_mix,
              "no_action_tokens": args.no_action_tokens,
              "concept_exponents": args.concept_exponents, "varied_target_range": args.varied_target_range,
              "threads": torch.get_num_threads(), "train_wall_s": round(train_wall, 1),
              "train_cpu_s": round(train_cpu, 1), "optimizer_steps": steps,
              "steps_per_s": outcome.hardware["steps_per_s"], "final_loss": round(outcome.final_loss, 4),
              "losses": [round(x, 4) for x in outcome.losses], "load_average": [round(x, 2) for x in load],
              "eval": {}}
    for family in eval_families:
        for eval_seed, by_policy in by_family[family].items():
            dt = by_policy["dt"]
            label = eval_seed if len(eval_families) == 1 else f"{eval_seed} ({family or 'builtin'})"
            print(f"| {label} | dt | {dt.mean():.4f} | [{_low(dt):.4f}, {_high(dt):.4f}] | | |")
            entry = record["eval"].setdefault(eval_seed, {}) if len(eval_families) == 1 else \
                record["eval"].setdefault(f"{family or 'builtin'}:{eval_seed}", {})
            entry["dt"] = round(float(dt.mean()), 4)
            for name in BASELINES:
                v, d = by_policy[name], dt - by_policy[name]
                print(f"| {label} | {name} | {v.mean():.4f} | [{_low(v):.4f}, {_high(v):.4f}] | {d.mean():+.4f} | "
                      f"[{_low(d):+.4f}, {_high(d):+.4f}] |")
                entry[name] = round(float(v.mean()), 4)
    if args.target_quantiles:
        from training.rl.trainer import target_return

        print("\n| eval seed | target quantile | target return | dt | dt - target_recall | 95% CI | dt - lowest_recall |")
        print("|---:|---:|---:|---:|---:|---|---:|")
        record["quantiles"] = {}
        for q in args.target_quantiles:
            model.config["target_return"] = target_return(dataset, quantile=q)
            with limited_threads(EVALUATION_THREADS):
                for eval_seed in eval_seeds:
                    dt = final_recall_of(model, encoder=encoder, eval_seed=eval_seed)
                    by_policy = values[eval_seed]
                    d, low = dt - by_policy["target_recall"], dt - by_policy["lowest_recall"]
                    print(f"| {eval_seed} | {q:g} | {model.config['target_return']:.4f} | {dt.mean():.4f} | "
                          f"{d.mean():+.4f} | [{_low(d):+.4f}, {_high(d):+.4f}] | {low.mean():+.4f} |", flush=True)
                    record["quantiles"].setdefault(str(q), {})[eval_seed] = round(float(dt.mean()), 4)
    if args.json:
        append_json_line(args.json, record)


def append_json_line(path: str, record: dict) -> None:
    """Append ``record`` to ``path`` as one JSON line (``--json FILE``: runs made in separate processes compared
    afterwards)."""
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")


def finish(record: dict, *, started: float, json_path: str | None) -> None:
    """An experiment's last lines: its wall time since ``started`` (time.perf_counter()) into ``record`` and printed,
    and ``record`` appended to ``json_path`` as one JSON line when given (``--json FILE``)."""
    record["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"\nwall {record['wall_s']:.0f} s")
    if json_path:
        append_json_line(json_path, record)


def _simulated_here(parser, flag: str) -> None:
    """parser.error naming ``flag`` when the default cohort would be simulated in worker processes, which would not
    see a setting made in this process."""
    from training.rl.simulator import MIN_REVIEWS_PER_PROCESS

    if USERS * INTERACTIONS >= MIN_REVIEWS_PER_PROCESS:
        parser.error(f"{flag}: the cohort would be simulated in worker processes")


def set_varied_target_range(parser, target_range) -> None:
    """``--varied-target-range LOW HIGH`` (None: leave the default): the behaviour mix's per-learner targets for this
    process (a class attribute); parser.error when the default cohort would be simulated in worker processes, which
    would not see it."""
    if not target_range:
        return
    from training.rl.policies import VariedTargetRecallPolicy

    _simulated_here(parser, "--varied-target-range")
    VariedTargetRecallPolicy.target_range = tuple(target_range)


def without_action_tokens() -> None:
    """Every DecisionTransformer built in this process gets its action embedding zeroed and frozen (no gradient),
    so an action token is its timestep embedding alone; the exported weights carry the zeros."""
    import torch

    from training.rl.dt import DecisionTransformer

    built = DecisionTransformer.__init__

    def init(self, config) -> None:
        built(self, config)
        with torch.no_grad():
            self.embed_action.weight.zero_()
        self.embed_action.weight.requires_grad_(False)

    DecisionTransformer.__init__ = init


def set_policy_mix(parser, text) -> None:
    """``--policy-mix NAME=SHARE,...`` (None: leave the default): the behaviour mix of this process's synthetic cohorts
    (``policies.DEFAULT_POLICY_MIX``, replaced in place so that every reader of the default sees it); parser.error for
    a malformed item, a name that is not a behaviour policy or a bad share (``policies.normalise_mix``'s message), or
    when the default cohort would be simulated in worker processes, which would not see it."""
    if not text:
        return
    from training.rl import policies

    _simulated_here(parser, "--policy-mix")
    mix = {}
    for item in text.split(","):
        name, sep, share = item.partition("=")
        if not sep:
            parser.error(f"--policy-mix: expected NAME=SHARE, got {item!r}")
        try:
            mix[name.strip()] = float(share)
        except ValueError:
            parser.error(f"--policy-mix: {name.strip()}'s share {share!r} is not a number")
    try:
        mix = policies.normalise_mix(mix)
    except ValueError as exc:
        parser.error(f"--policy-mix: {exc}")
    policies.DEFAULT_POLICY_MIX.clear()
    policies.DEFAULT_POLICY_MIX.update(mix)


def experiment_parser(doc: str):
    """The argument parser the issue-21 experiments share: --seed (training, default 3), --eval-seeds (default 99
    2024), --threads (default 1); ``check_seeds(parser, args)`` refuses the reporting seed."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=3, help="training seed (default 3)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[99, 2024])
    parser.add_argument("--threads", type=int, default=1)
    return parser


def check_seeds(parser, args) -> None:
    """parser.error when --seed or --eval-seeds names the reporting seed."""
    if REPORTING_SEED in args.eval_seeds or args.seed == REPORTING_SEED:
        parser.error(f"{REPORTING_SEED} is the reporting seed; choose on others")


def train_and_report(dataset, *, seed: int, threads: int, eval_seeds: list[int], prefix: str):
    """Train the default recipe on ``dataset`` (CPU, ``threads``), print the training time and final loss, evaluate
    DTLite and BASELINES on ``eval_seeds``' held-out students (one thread, as the pipeline) and print the paired
    table (Markdown). Returns the DTLite model."""
    from training.pipeline import TRAIN_DEFAULTS, train_and_export
    from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.rl.dtlite import DTLite
    from training.rl.encoder import EncoderConfig
    from training.spec import TrainingSpec

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        outcome = train_and_export(dataset=dataset, output_dir=tmp, epochs=TrainingSpec.default("epochs"),
                                   batch_size=TrainingSpec.default("batch_size"), seed=seed, no_cuda=True,
                                   train_config=replace(TRAIN_DEFAULTS, num_threads=threads))
        model = DTLite.load(Path(tmp) / WEIGHTS_FILE, Path(tmp) / CONFIG_FILE)
    print(f"training {time.perf_counter() - started:.0f} s, final loss {outcome.final_loss:.4f}\n", flush=True)
    values: dict = {}
    with limited_threads(EVALUATION_THREADS):
        evaluate_seeds(values, eval_seeds=eval_seeds, model=model,
                       encoder=EncoderConfig.from_dict(model.config["encoder"]))
    print("| eval seed | dt | dt - policy (paired) |")
    print("|---:|---:|---|")
    for eval_seed, by_policy in values.items():
        dt = by_policy["dt"]
        paired = "; ".join(f"{name} {(dt - by_policy[name]).mean():+.4f} [{_low(dt - by_policy[name]):+.4f}, "
                           f"{_high(dt - by_policy[name]):+.4f}]" for name in BASELINES)
        print(f"| {eval_seed} | {dt.mean():.4f} | {paired} |", flush=True)
    return model


def evaluate_seeds(values: dict, *, eval_seeds: list[int], model, encoder, family: str | None = None) -> None:
    """values[eval_seed][policy]: each held-out student's mean final recall (evaluation.final_recall), float64
    [STUDENTS], for DTLite ("dt") and BASELINES, on each evaluation seed's students (of ``family``; None: the
    built-in ones)."""
    from training.rl.evaluation import final_recall

    for eval_seed in eval_seeds:
        values[eval_seed] = {"dt": final_recall_of(model, encoder=encoder, eval_seed=eval_seed, family=family)}
        for name in BASELINES:
            values[eval_seed][name] = final_recall(policy_name=name, num_concepts=CONCEPTS, students=STUDENTS,
                                                   interactions=INTERACTIONS, seed=eval_seed, encoder=encoder,
                                                   family=family)


def final_recall_of(model, *, encoder, eval_seed: int, family: str | None = None) -> np.ndarray:
    """DTLite's per-student mean final recall on eval_seed's held-out students (of ``family``; None: built-in),
    float64 [STUDENTS]."""
    from training.rl.evaluation import final_recall

    return final_recall(policy_name="dt", num_concepts=CONCEPTS, students=STUDENTS, interactions=INTERACTIONS,
                        seed=eval_seed, encoder=encoder, model=model, family=family)


def _half(v: np.ndarray) -> float:
    return 1.96 * float(v.std(ddof=1)) / np.sqrt(v.size)


def _low(v: np.ndarray) -> float:
    return float(v.mean()) - _half(v)


def _high(v: np.ndarray) -> float:
    return float(v.mean()) + _half(v)


if __name__ == "__main__":
    main()
