"""Experiment (issue 21): does weighting each step's action loss by a learned critic's advantage (advantage-weighted
regression, Peng et al. 2019, "Advantage-Weighted Regression: Simple and Scalable Off-Policy Reinforcement
Learning"; the per-step weights of CRR, Wang et al. 2020) make the Decision Transformer beat its teachers?

The episode-level weights of ``advantage_weights.py`` judged a whole episode at once; here each step is judged. Two
critics are fitted to the training data's returns-to-go by least squares, cross-fitted over two halves of the
episodes (a step's advantage comes from critics that never saw its episode, so the return noise they fitted does not
come back as advantage):

- ``Q(s, a)``: per concept, a small MLP over that concept's encoded features (recall, elapsed, reviews, stability)
  and the state's means and the step's position in the episode, read at the concept reviewed;
- ``V(s)``: an MLP over the whole state and the position.

A step's advantage is ``Q(s, a) - V(s)`` (``--advantage critic``) or ``G_t - V(s)`` (``--advantage monte-carlo``:
the return actually seen, noisier). Its weight is ``min(exp(A / (temperature x sd A)), 20)``, normalised to mean 1,
and the default recipe trains with each valid position's cross-entropy times its row's weight. DTLite is evaluated
with the baselines on held-out validation students, paired. The reporting seed 1234 is refused.

    python bench/critic_weights.py [--seed 3] [--eval-seeds 99 2024] [--advantage critic|monte-carlo]
        [--temperature 1] [--threads 1]

The trainer has no loss weights: this script wraps the trainer's window draw and cross-entropy for its own process
(an experiment, not a product feature).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

import numpy as np  # noqa: E402

FEATURES = 4  # the encoder's per-concept features
MAX_WEIGHT = 20.0


def critic_inputs(states: np.ndarray, timesteps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """States [N, C F] at steps [N] of their episodes -> (per-concept inputs float32 [N, C, 2F + 1], whole-state
    inputs float32 [N, C F + 1])."""
    states = np.asarray(states, np.float32)
    n = len(states)
    per_concept = states.reshape(n, -1, FEATURES)  # [N, C, F]
    c = per_concept.shape[1]
    position = (np.asarray(timesteps, np.float32) / 100.0).reshape(n, 1)  # [N, 1]
    means = per_concept.mean(axis=1)  # [N, F]
    shared = np.concatenate([means, position], axis=1)  # [N, F + 1]
    concept_in = np.concatenate([per_concept, np.broadcast_to(shared[:, None], (n, c, shared.shape[1]))], axis=2)
    return concept_in, np.concatenate([states, position], axis=1)


def fit(net, inputs, targets, *, pick=None, epochs: int, seed: int):
    """Least squares of net(inputs) (or its column pick) on targets, Adam, minibatches of 512."""
    import torch

    torch.manual_seed(seed)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets.astype(np.float32))
    p = None if pick is None else torch.from_numpy(pick)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 512):
            idx = order[i:i + 512]
            out = net(x[idx])
            if p is not None:
                out = out.gather(1, p[idx, None])[:, 0]
            loss = ((out - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def advantages(dataset, *, kind: str, seed: int, epochs: int) -> tuple[np.ndarray, dict]:
    """Each row's advantage, float64 [N], cross-fitted over two halves of the episodes; and fit figures."""
    import torch
    from torch import nn

    concept_in, state_in = critic_inputs(dataset.state_rows(np.arange(len(dataset.actions))), dataset.timesteps)
    returns = np.asarray(dataset.returns_to_go, np.float64)
    actions = np.asarray(dataset.actions, np.int64)
    starts = np.asarray(dataset.episode_starts)
    episode = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    half = np.random.default_rng(seed).permutation(len(starts) - 1) % 2  # episode -> fold
    fold = half[episode]
    q_hat, v_hat = np.zeros(len(returns)), np.zeros(len(returns))
    q_nets = []
    for k in (0, 1):
        train, test = fold != k, fold == k
        torch.manual_seed(seed + 100 + k)  # the critics' initial weights
        q_net = nn.Sequential(nn.Linear(concept_in.shape[2], 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(),
                              nn.Linear(64, 1), nn.Flatten(1))  # [N, C, in] -> [N, C]
        v_net = nn.Sequential(nn.Linear(state_in.shape[1], 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(),
                              nn.Linear(128, 1), nn.Flatten(0))
        fit(q_net, concept_in[train], returns[train], pick=actions[train], epochs=epochs, seed=seed + k)
        fit(v_net, state_in[train], returns[train], epochs=epochs, seed=seed + 10 + k)
        q_nets.append(q_net)
        with torch.no_grad():
            q_all = q_net(torch.from_numpy(concept_in[test])).double().numpy()
            q_hat[test] = q_all[np.arange(test.sum()), actions[test]]
            v_hat[test] = v_net(torch.from_numpy(state_in[test])).double().numpy()
    resid = lambda pred: 1 - np.var(returns - pred) / np.var(returns)  # noqa: E731
    adv = (q_hat - v_hat) if kind == "critic" else (returns - v_hat)
    return adv, {"q_nets": q_nets, "r2_q": resid(q_hat), "r2_v": resid(v_hat), "corr_adv_mc": np.corrcoef(q_hat - v_hat,
                                                                                         returns - v_hat)[0, 1]}


def greedy_recall(q_nets, *, eval_seed: int, encoder) -> np.ndarray:
    """The critics' own policy (argmax over concepts of the two folds' mean Q) on eval_seed's held-out students:
    each student's mean final recall, float64 [STUDENTS] (as evaluation.final_recall)."""
    import torch

    import training_recipe as recipe
    from training.rl.evaluation import closed_loop_final_recall
    from training.rl.policies import Policy
    from training.rl.simulator import make_cohort, policy_rng

    class CriticGreedy(Policy):
        name = "critic_greedy"
        uses_states = True

        def select(self, obs):
            concept_in, _ = critic_inputs(obs.states, np.full(len(obs.t), obs.step))
            with torch.no_grad():
                q = sum(net(torch.from_numpy(concept_in)) for net in q_nets)
            return q.argmax(dim=1).numpy().astype(np.int64)

    cohort = make_cohort(family=None, students_like=None, num_students=recipe.STUDENTS, num_concepts=recipe.CONCEPTS,
                         interactions=recipe.INTERACTIONS, seed=eval_seed, held_out=True, config=None)
    policy = CriticGreedy(num_learners=recipe.STUDENTS, num_concepts=recipe.CONCEPTS,
                          rng=policy_rng(seed=eval_seed, held_out=True, name="critic_greedy"))
    return closed_loop_final_recall(cohort=cohort, policy=policy, encoder=encoder)


def main() -> None:
    import django

    django.setup()
    import torch

    import training.rl.trainer as trainer
    import training_recipe as recipe
    from training.pipeline import build_synthetic_dataset
    from training.rl.batches import draw_window_ends
    from training.rl.encoder import EncoderConfig

    parser = recipe.experiment_parser(__doc__)
    parser.add_argument("--advantage", choices=("critic", "monte-carlo"), default="critic")
    parser.add_argument("--temperature", type=float, default=1.0, help="weights exp(A / (temperature x sd A))")
    parser.add_argument("--critic-epochs", type=int, default=20)
    parser.add_argument("--greedy-only", action="store_true",
                        help="only evaluate the critics' own argmax policy (no Decision Transformer training)")
    args = parser.parse_args()
    recipe.check_seeds(parser, args)
    torch.set_num_threads(args.threads)

    dataset = build_synthetic_dataset(num_users=recipe.USERS, interactions=recipe.INTERACTIONS,
                                      concepts=recipe.CONCEPTS, seed=args.seed)
    started = time.perf_counter()
    adv, figures = advantages(dataset, kind=args.advantage, seed=args.seed, epochs=args.critic_epochs)
    critic_s = time.perf_counter() - started
    if args.greedy_only:
        from training.rl.evaluation import final_recall

        encoder = EncoderConfig.from_dict(dataset.encoder)
        print(f"critics {critic_s:.0f} s: R^2 of Q(s,a) {figures['r2_q']:.3f}, of V(s) {figures['r2_v']:.3f}\n")
        for eval_seed in args.eval_seeds:
            greedy = greedy_recall(figures["q_nets"], eval_seed=eval_seed, encoder=encoder)
            others = {name: final_recall(policy_name=name, num_concepts=recipe.CONCEPTS, students=recipe.STUDENTS,
                                         interactions=recipe.INTERACTIONS, seed=eval_seed, encoder=encoder)
                      for name in recipe.BASELINES}
            print(f"| {eval_seed} | critic greedy {greedy.mean():.4f} | " + "; ".join(
                f"{name} {v.mean():.4f}, paired {(greedy - v).mean():+.4f}" for name, v in others.items()) + " |",
                flush=True)
        return
    weights = np.minimum(np.exp(adv / (args.temperature * adv.std())), MAX_WEIGHT)
    weights /= weights.mean()
    row_w = torch.from_numpy(weights.astype(np.float32))
    starts = np.asarray(dataset.episode_starts)
    K = 20  # the default model's context length (checked below)
    drawn: dict = {}

    def recording_draw(rng, *, num_steps: int, batch_size: int) -> np.ndarray:
        ends = draw_window_ends(rng, num_steps=num_steps, batch_size=batch_size)
        first = starts[np.searchsorted(starts, ends, side="right") - 1]
        rows = ends[:, None] - (K - 1) + np.arange(K)
        drawn["w"] = row_w[torch.from_numpy(rows[rows >= first[:, None]])]  # the order of logits[valid]
        return ends

    def weighted_cross_entropy(logits, targets):
        w = drawn["w"]
        if len(w) != len(targets):
            raise SystemExit(f"{len(w)} weights for {len(targets)} positions: the context length is not {K}")
        return (torch.nn.functional.cross_entropy(logits, targets, reduction="none") * w).sum() / w.sum()

    trainer.draw_window_ends = recording_draw
    trainer.F = SimpleNamespace(cross_entropy=weighted_cross_entropy)
    print(f"## seed {args.seed}, advantage {args.advantage}, temperature {args.temperature:g}\n")
    print(f"critics {critic_s:.0f} s: R^2 of Q(s,a) {figures['r2_q']:.3f}, of V(s) {figures['r2_v']:.3f}; "
          f"corr(Q - V, G - V) {figures['corr_adv_mc']:.3f}; advantage sd {adv.std():.4f}; weights: max "
          f"{weights.max():.2f}, effective rows {weights.sum() ** 2 / (weights ** 2).sum() / len(weights):.2f} "
          f"of all\n", flush=True)
    model = recipe.train_and_report(dataset, seed=args.seed, threads=args.threads, eval_seeds=args.eval_seeds,
                                    prefix="bench-critic-")
    if int(model.config["context_length"]) != K:  # the weights above were gathered for K-step windows
        raise SystemExit(f"context length {model.config['context_length']}, expected {K}")


if __name__ == "__main__":
    main()
