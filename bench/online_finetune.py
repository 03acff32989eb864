"""Experiment (issue 21): does online fine-tuning in the simulator (Online Decision Transformer, Zheng, Zhang &
Grover, ICML 2022, "Online Decision Transformer") lift the Decision Transformer above its best teacher,
target_recall?

Offline first, exactly as ``training_recipe.py`` / ``train_and_report``: the default training data (500 built-in
students x 100 reviews, 20 concepts, the default behaviour mix, ``build_synthetic_dataset``) and the default recipe
(``train_and_export`` with ``TRAIN_DEFAULTS``), then DTLite and the baselines on the held-out validation students
(round 0). Then, per round:

1. roll out the DT itself (the PyTorch weights of the previous round, as DTLite: ``evaluation.DecisionTransformerPolicy``,
   the same closed loop as the evaluation) on ``--episodes-per-round`` fresh *training* students (built-in family,
   training domain, seed ``derived_seed(seed, round)``: never the evaluation students), sampling its actions from
   softmax(logits / ``--temperature``) and conditioned on the target return (default the offline one: the 0.9
   quantile of the offline episodes' returns, ``TrainConfig.target_return_quantile``);
2. turn the rollouts' review log into trajectories with the training data's own fitted encoder
   (``trajectories_from_columns``: the same states, rewards, hindsight returns-to-go from the rewards actually
   received, timesteps), and add them to the replay buffer, which starts as the offline dataset (``--buffer
   append``: keep everything; ``--buffer replace``: a fixed number of episodes, the oldest replaced, the offline
   ones first);
3. fine-tune the offline model's weights (``dt_model.pt``'s model and AdamW state, continued) for
   ``--finetune-steps`` optimiser steps on windows drawn uniformly from the buffer's steps (the trainer's own
   ``BatchBuilder``, ``draw_window_ends``, autocast, cross-entropy and clipping; a constant ``--learning-rate``);
4. export DTLite from the fine-tuned weights (``checkpoint.export_artifacts``) and evaluate it on the same held-out
   students as ``training_recipe.py`` (the baselines do not change between rounds: the encoder is the same).

Prints a Markdown table per round (DT mean final recall, paired dt - target_recall / lowest_recall / round_robin
with 95% intervals, as ``train_and_report``) and, with ``--json FILE``, appends one JSON line per run.

    OMP_NUM_THREADS=1 python bench/online_finetune.py [--seed 3] [--eval-seeds 99 2024] [--threads 1]
        [--rounds 3] [--episodes-per-round 500] [--finetune-steps 300] [--learning-rate 1e-4]
        [--temperature 1.0] [--buffer append|replace] [--target-quantile Q] [--offline-dir DIR] [--json FILE]

``--offline-dir DIR``: keep the offline model's files there and, when DIR already holds them for this seed, skip the
offline training (the dataset is rebuilt: it is deterministic for the seed). Choose on validation seeds (training 3
and 7, held-out 99 and 2024); the reporting seed 1234 is refused. The trainer has no warm start: this script's
fine-tuning loop is written here with the trainer's functions (an experiment, not a product feature).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import numpy as np  # noqa: E402

ONLINE_SEED_BASE = 1_000_000  # rollout students' seed: ONLINE_SEED_BASE * round + training seed


def derived_seed(seed: int, round_: int) -> int:
    """The seed of round ``round_``'s rollout students (training domain): neither a training seed of the offline data
    nor the reporting seed."""
    value = ONLINE_SEED_BASE * round_ + seed
    return value


class SamplingModel:
    """A DTLite whose select_action samples at a temperature (the rollouts' exploration), from its own stream."""

    def __init__(self, model, *, temperature: float, rng: np.random.Generator, target_return: float) -> None:
        self.model, self.temperature, self.rng = model, temperature, rng
        self.config = dict(model.config, target_return=float(target_return))

    def select_action(self, returns_to_go, states, actions, timesteps, attention_mask=None, **_):
        return self.model.select_action(returns_to_go, states, actions, timesteps, attention_mask,
                                        temperature=self.temperature or None, rng=self.rng)


def rollout(lite, *, encoder, episodes: int, seed: int, temperature: float, target_return: float, concept_keys):
    """The DT driving ``episodes`` fresh training students (training domain, ``seed``): the trajectories (the
    training data's format, encoded with ``encoder``) and figures."""
    from training.rl.encoder import StateEncoder
    from training.rl.evaluation import FINAL_RECALL_DELAY_S, DecisionTransformerPolicy
    from training.rl.review_columns import ReviewColumns
    from training.rl.simulator import make_cohort, policy_rng, run_policies
    from training.rl.trajectories import trajectories_from_columns
    import training_recipe as recipe

    cohort = make_cohort(num_students=episodes, num_concepts=recipe.CONCEPTS, interactions=recipe.INTERACTIONS,
                         seed=seed, held_out=False)
    rng = policy_rng(seed=seed, held_out=False, name="online_dt")
    policy = DecisionTransformerPolicy(
        model=SamplingModel(lite, temperature=temperature, rng=rng, target_return=target_return),
        num_learners=episodes, num_concepts=recipe.CONCEPTS, rng=rng)
    out = run_policies(cohort=cohort, groups=[(policy, np.arange(episodes))], encoder=StateEncoder(encoder),
                       rewards=True)
    final = cohort.recall_probability(cohort.schedule()[:, -1] + FINAL_RECALL_DELAY_S).mean(axis=1)
    columns = ReviewColumns(
        learner=np.repeat(np.arange(episodes, dtype=np.int64), recipe.INTERACTIONS),
        concept=out.concepts.reshape(-1), t=out.t.reshape(-1), correct=out.correct.reshape(-1),
        grade=out.grade.reshape(-1), response_time_ms=out.response_time_ms.reshape(-1))
    data = trajectories_from_columns(columns, encoder=encoder, concept_keys=list(concept_keys))
    # the extraction's rewards are the closed loop's (one encoder, one update rule): a check of the format
    reward_gap = float(np.abs(data.rewards - out.rewards.reshape(-1)).max())
    returns = data.returns_to_go[data.episode_starts[:-1]]
    distinct = np.array([len(np.unique(row)) for row in out.concepts])
    return data, {"final_recall": float(final.mean()), "mean_return": float(returns.mean()),
                  "reward_gap": reward_gap, "distinct_concepts": float(distinct.mean())}


def stored(dataset):
    """(states [N, S], actions, rewards, returns_to_go, timesteps, episode_starts) of a dataset, states built."""
    return (dataset.states.astype(np.float32), dataset.actions, dataset.rewards, dataset.returns_to_go,
            dataset.timesteps, dataset.episode_starts)


def buffer_dataset(episodes: list[tuple], *, template):
    """A TrajectoryDataset (states held) of the buffer's episodes, each (states, actions, rewards, rtg, timesteps)."""
    from training.rl.trajectories import TrajectoryDataset

    lengths = np.array([len(e[1]) for e in episodes], dtype=np.int64)
    cat = [np.concatenate([e[i] for e in episodes]) for i in range(5)]
    return TrajectoryDataset(states=cat[0], actions=cat[1], rewards=cat[2], returns_to_go=cat[3], timesteps=cat[4],
                             episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                             concept_keys=template.concept_keys, encoder=template.encoder)


def split_episodes(dataset) -> list[tuple]:
    states, actions, rewards, rtg, timesteps, starts = stored(dataset)
    return [(states[a:b], actions[a:b], rewards[a:b], rtg[a:b], timesteps[a:b]) for a, b in zip(starts[:-1], starts[1:])]


def finetune(model, optimizer, data, *, steps: int, batch_size: int, grad_clip: float, seed: int) -> float:
    """``steps`` optimiser steps of the trainer's loss on windows of ``data`` drawn as the trainer draws them; the
    mean loss."""
    import torch

    from training.rl.batches import BatchBuilder, draw_window_ends
    from training.rl.trainer import optimisation_step, training_autocast

    builder = BatchBuilder(data, context_length=model.config.context_length, device="cpu", reuse_states=True)
    autocast = training_autocast("cpu", cpu_bfloat16=None)  # the trainer's default on this CPU
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.train()
    total = 0.0
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for _ in range(steps):
            batch = builder.batch(draw_window_ends(rng, num_steps=builder.num_steps, batch_size=batch_size))
            total += float(optimisation_step(model, optimizer, batch, autocast=autocast, grad_clip=grad_clip))
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    model.eval()
    return total / max(steps, 1)


def export_lite(model, *, dataset, target_return: float, extra: dict):
    """DTLite from the PyTorch model's weights, through the project's export (as train_and_export writes it)."""
    from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE
    from training.rl.checkpoint import export_artifacts
    from training.rl.dtlite import DTLite

    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        export_artifacts(model=model, output_dir=tmp, concept_keys=list(dataset.concept_keys),
                         encoder=dataset.encoder, target_return=target_return, onnx=False, extra=extra)
        return DTLite.load(Path(tmp) / WEIGHTS_FILE, Path(tmp) / CONFIG_FILE)


def print_table(values: dict, dt_by_seed: dict, *, title: str) -> dict:
    """train_and_report's table for DT values dt_by_seed[eval_seed] against values[eval_seed][baseline]."""
    import training_recipe as recipe

    print(f"\n{title}\n")
    print("| eval seed | dt | dt - policy (paired) |")
    print("|---:|---:|---|")
    figures = {}
    for eval_seed, dt in dt_by_seed.items():
        by_policy = values[eval_seed]
        paired = "; ".join(f"{name} {(dt - by_policy[name]).mean():+.4f} [{recipe._low(dt - by_policy[name]):+.4f}, "
                           f"{recipe._high(dt - by_policy[name]):+.4f}]" for name in recipe.BASELINES)
        print(f"| {eval_seed} | {dt.mean():.4f} | {paired} |", flush=True)
        figures[eval_seed] = {"dt": round(float(dt.mean()), 4), **{
            f"dt - {name}": [round(float((dt - by_policy[name]).mean()), 4),
                             round(recipe._low(dt - by_policy[name]), 4), round(recipe._high(dt - by_policy[name]), 4)]
            for name in recipe.BASELINES}}
    return figures


def main() -> None:
    import django

    django.setup()
    import torch

    import training_recipe as recipe
    from training.pipeline import TRAIN_DEFAULTS, build_synthetic_dataset, train_and_export
    from training.rl.artifacts import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE
    from training.rl.checkpoint import read_checkpoint
    from training.rl.cpu_threads import EVALUATION_THREADS, limited_threads
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.dtlite import DTLite
    from training.rl.encoder import EncoderConfig
    from training.rl.trainer import target_return as quantile_return
    from training.spec import TrainingSpec

    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="online rounds after the offline training (default 3)")
    parser.add_argument("--episodes-per-round", type=int, default=500,
                        help="fresh training students rolled out per round (default 500, the offline cohort's size)")
    parser.add_argument("--finetune-steps", type=int, default=300, help="optimiser steps per round (default 300)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="fine-tuning rate, constant (default 1e-4)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="rollouts sample from softmax(logits / T); 0: argmax (default 1.0)")
    parser.add_argument("--buffer", choices=("append", "replace"), default="append",
                        help="append: offline + every rollout; replace: the offline size, oldest episodes replaced")
    parser.add_argument("--target-quantile", type=float, metavar="Q",
                        help="target return (rollouts and evaluation) = this quantile of the buffer's episode "
                             "returns, recomputed each round (default: the offline model's own, fixed)")
    parser.add_argument("--offline-dir", metavar="DIR", help="keep / reuse the offline model's files here")
    parser.add_argument("--json", metavar="FILE", help="append the run's figures as one JSON line")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load = os.getloadavg()
    epochs, batch_size = TrainingSpec.default("epochs"), TrainingSpec.default("batch_size")

    dataset = build_synthetic_dataset(num_users=recipe.USERS, interactions=recipe.INTERACTIONS,
                                      concepts=recipe.CONCEPTS, seed=args.seed)
    encoder = EncoderConfig.from_dict(dataset.encoder)
    data_s = time.perf_counter() - started
    offline_dir = Path(args.offline_dir) if args.offline_dir else Path(tempfile.mkdtemp(prefix="bench-online-offline-"))
    checkpoint_file = offline_dir / CHECKPOINT_FILE
    reused = False
    if checkpoint_file.exists():
        saved = read_checkpoint(checkpoint_file)
        if (saved.get("extra") or {}).get("seed") != args.seed or saved.get("encoder") != dataset.encoder:
            parser.error(f"--offline-dir {offline_dir}: holds another seed's or dataset's model")
        reused, train_s, final_loss = True, 0.0, float((saved["extra"].get("loss_history") or [float("nan")])[-1])
    else:
        wall = time.perf_counter()
        outcome = train_and_export(dataset=dataset, output_dir=offline_dir, epochs=epochs, batch_size=batch_size,
                                   seed=args.seed, no_cuda=True,
                                   train_config=replace(TRAIN_DEFAULTS, num_threads=args.threads))
        train_s, final_loss = time.perf_counter() - wall, outcome.final_loss
        saved = read_checkpoint(checkpoint_file)
    offline_target = float(saved["target_return"])
    lite = DTLite.load(offline_dir / WEIGHTS_FILE, offline_dir / CONFIG_FILE)
    model = DecisionTransformer(DTConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    model.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=TRAIN_DEFAULTS.weight_decay)
    if saved.get("optimizer"):
        optimizer.load_state_dict(saved["optimizer"])  # Adam's moments continue from the offline run
    for group in optimizer.param_groups:
        group["lr"] = args.learning_rate  # constant (the offline state carries its scheduler's last rate)
        group.pop("initial_lr", None)
    if not args.offline_dir:
        import shutil

        shutil.rmtree(offline_dir, ignore_errors=True)

    print(f"## online fine-tuning (ODT): training seed {args.seed}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start\n")
    print(f"rounds {args.rounds}, {args.episodes_per_round} episodes a round, {args.finetune_steps} steps a round at "
          f"lr {args.learning_rate:g} (batch {batch_size}), temperature {args.temperature:g}, buffer {args.buffer}, "
          f"target return " + (f"quantile {args.target_quantile:g} of the buffer" if args.target_quantile is not None
                               else f"{offline_target:.4f} (offline, fixed)") + "\n")
    print(f"data {data_s:.0f} s; offline training {train_s:.0f} s" + (" (reused from --offline-dir)" if reused else "")
          + f", final loss {final_loss:.4f}", flush=True)

    values: dict = {}
    wall = time.perf_counter()
    with limited_threads(EVALUATION_THREADS):
        recipe.evaluate_seeds(values, eval_seeds=args.eval_seeds, model=lite, encoder=encoder)
    record = {"seed": args.seed, "eval_seeds": args.eval_seeds, "rounds": args.rounds,
              "episodes_per_round": args.episodes_per_round, "finetune_steps": args.finetune_steps,
              "learning_rate": args.learning_rate, "temperature": args.temperature, "buffer": args.buffer,
              "target_quantile": args.target_quantile, "offline_target_return": round(offline_target, 4),
              "offline_final_loss": round(final_loss, 4), "threads": torch.get_num_threads(),
              "load_average": [round(x, 2) for x in load],
              "baselines": {s: {n: round(float(v.mean()), 4) for n, v in values[s].items() if n != "dt"}
                            for s in args.eval_seeds}, "rounds_figures": []}
    figures = print_table(values, {s: values[s]["dt"] for s in args.eval_seeds},
                          title=f"### round 0 (offline), evaluation {time.perf_counter() - wall:.0f} s")
    record["rounds_figures"].append({"round": 0, "eval": figures})

    episodes = split_episodes(dataset)
    capacity = len(episodes)
    target = offline_target
    for round_ in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        roll_seed = derived_seed(args.seed, round_)
        online, roll = rollout(lite, encoder=encoder, episodes=args.episodes_per_round, seed=roll_seed,
                               temperature=args.temperature, target_return=target, concept_keys=dataset.concept_keys)
        t1 = time.perf_counter()
        episodes += split_episodes(online)
        if args.buffer == "replace":
            episodes = episodes[-capacity:]  # the oldest first out (the offline episodes, then earlier rounds')
        data = buffer_dataset(episodes, template=dataset)
        if args.target_quantile is not None:
            target = quantile_return(data, quantile=args.target_quantile)
        loss = finetune(model, optimizer, data, steps=args.finetune_steps, batch_size=batch_size,
                        grad_clip=TRAIN_DEFAULTS.grad_clip, seed=roll_seed)
        t2 = time.perf_counter()
        lite = export_lite(model, dataset=dataset, target_return=target, extra={"seed": args.seed, "round": round_})
        dt_by_seed = {}
        with limited_threads(EVALUATION_THREADS):
            for eval_seed in args.eval_seeds:
                dt_by_seed[eval_seed] = recipe.final_recall_of(lite, encoder=encoder, eval_seed=eval_seed)
        t3 = time.perf_counter()
        figures = print_table(values, dt_by_seed, title=(
            f"### round {round_}: rollout {t1 - t0:.0f} s on training students seed {roll_seed} (their mean final "
            f"recall {roll['final_recall']:.4f}, mean return {roll['mean_return']:.4f}, {roll['distinct_concepts']:.1f} "
            f"distinct concepts a student, reward check {roll['reward_gap']:.1e}); buffer {len(episodes)} episodes; "
            f"fine-tuning {t2 - t1:.0f} s, mean loss {loss:.4f}; target return {target:.4f}; evaluation "
            f"{t3 - t2:.0f} s"))
        record["rounds_figures"].append({"round": round_, "rollout_seed": roll_seed, "eval": figures,
                                         "rollout": {k: round(v, 6) for k, v in roll.items()},
                                         "buffer_episodes": len(episodes), "finetune_loss": round(loss, 4),
                                         "target_return": round(target, 4),
                                         "seconds": [round(t1 - t0, 1), round(t2 - t1, 1), round(t3 - t2, 1)]})
    recipe.finish(record, started=started, json_path=args.json)


if __name__ == "__main__":
    main()
