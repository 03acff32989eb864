"""Policy-gradient fine-tuning of a trained Decision Transformer in the student families (issue 21).

Offline training imitates the behaviour mix, so the Decision Transformer can at best select among its teachers'
choices (bench/README.md: return conditioning, advantage weights, critics and online fine-tuning on hindsight returns
all left it level with target_recall). This stage optimises the policy's own objective instead, in simulated
students of the training domain: REINFORCE (Williams 1992, "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8) with the leave-one-out baseline of several samples per
student (RLOO: Kool, van Hoof & Welling 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!", ICLR workshop).

One round (``fine_tune``):

1. ``students`` fresh training students (``students.make_cohort``, training domain, seed
   ``ROUND_SEED_BASE x round + seed``: never an evaluation stream), of ``families[(round - 1) % len(families)]``
   (with ``mixed_rounds``, of every family, the students split between them: ``mixed_rollouts``; with
   ``randomised_curricula``, on a curriculum of the round's own, ``SimulatorConfig.curriculum_seed`` = the round's seed
   + CURRICULUM_SEED_OFFSET), are
   each taught ``samples`` times by the current weights (as DTLite, the evaluation's closed loop,
   ``evaluation.DecisionTransformerPolicy``), each action drawn from softmax(logits / ``temperature``): the same
   students and the same outcome dice every time (common random numbers), only the policy's draws differ;
2. an episode's return is the student's mean true recall ``evaluation.FINAL_RECALL_DELAY_S`` after the last review
   (the evaluation's score); its advantage is the return minus the mean of that student's other samples, divided by
   the round's standard deviation of the advantages (``rloo_advantages``);
3. the loss is ``-mean_episodes(A x sum_t log pi_T(a_t | context_t))`` over the contexts the rollout saw
   (``episode_windows``: with local attention every episode whole, in segments of at most SEGMENT_STEPS steps, each
   step's logits those of its own context: the same function, computed under the offline trainer's autocast, so in
   bfloat16 where the CPU has bfloat16 units, while the rollouts ran DTLite in float32; with full attention the first
   ``context_length`` steps in one causal forward and ``steps_per_episode`` later steps drawn uniformly and weighted
   so that the sum is unbiased), in eval mode (no dropout: the policy that was rolled out), ``updates`` AdamW steps a
   round on equal shares of the episodes, gradients clipped in global norm.

Every ``select_every`` rounds (and before the first and after the last) the greedy policy, as it serves, teaches
``selection_students`` other training-domain students of each family (``selection_score``: by ``selection``, the mean
over the families, or the worst family's margin over its best heuristic on the same students); the weights that scored
best are the ones kept (early stopping on training-domain students: at the constant learning rate ten rounds can set
the policy back, by 0.013-0.015 on validation seeds between rounds 20 and 30, bench/README.md). The offline weights
are a candidate too, so the stage never
returns a policy that teaches those students worse than the one it started from.

The conditioning (the target return) is kept: only the weights change, so the export is the same DTLite pair
(``checkpoint.export_artifacts``) and DTLite stays the model's exact NumPy twin.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .artifacts import CONFIG_FILE, WEIGHTS_FILE, dtlite_files
from .cpu_threads import EVALUATION_THREADS, limited_threads, pool_size, worker_pool
from .dt import DecisionTransformer
from .dtlite import DTLite
from .encoder import EncoderConfig, StateEncoder
from .evaluation import (
    EVALUATION_INTERACTIONS, FINAL_RECALL_DELAY_S, HEURISTICS, DecisionTransformerPolicy, final_recall,
)
from .simulator import policy_rng, run_policies
from .students import FITTED, SimulatorConfig, StudentsLike, make_cohort, parse_families

ROUND_SEED_BASE = 3_000_000  # a round's students: seed ROUND_SEED_BASE x round + the training seed, training domain
# the selection's students: seed SELECTION_SEED_OFFSET + the training seed, training domain (no round's: those are
# multiples of ROUND_SEED_BASE plus the seed; never the evaluation's, which is the held-out domain)
SELECTION_SEED_OFFSET = ROUND_SEED_BASE // 2
# a round's sample k draws from policy_rng(seed = round seed x MAX_SAMPLES + k): more samples would reach the next
# seed's streams
MAX_SAMPLES = 16
# a round's curriculum with randomised_curricula: SimulatorConfig.curriculum_seed = the round's seed + this (never 0,
# the default curriculum's)
CURRICULUM_SEED_OFFSET = 1
SELECTIONS = ("mean", "worst_margin")  # PolicyGradientConfig.selection: selection_score without / with references


@dataclass(frozen=True)
class PolicyGradientConfig:
    """The fine-tuning's settings. ``temperature`` is the sampled policy's (the gradient is that policy's); the served
    policy is the same weights' argmax. Defaults: chosen on validation seeds (bench/README.md, ``policy_gradient.py``).
    ValueError for a setting out of range."""

    rounds: int = 50
    students: int = 256
    samples: int = 4
    temperature: float = 0.3
    learning_rate: float = 3e-4
    updates: int = 4
    steps_per_episode: int = 16  # later windows an episode, for a model with full attention only (episode_windows)
    grad_clip: float = 0.25  # the offline trainer's (TrainConfig.grad_clip)
    select_every: int = 5
    selection_students: int = 256
    families: tuple[str, ...] = field(default_factory=lambda: ("builtin",))
    # False: one family a round, in turn; True: every family every round, ``students`` split between them as equally
    # as they divide and each family's advantages normalised on their own (``mixed_rollouts``)
    mixed_rounds: bool = False
    # how the kept weights are chosen (``selection_score``): "mean" recall over the families, or "worst_margin", the
    # smallest margin over a family's best heuristic
    selection: str = "mean"
    # True: each round's students practise a curriculum of their own (``SimulatorConfig.curriculum_seed`` drawn from
    # the round's seed: other per-concept difficulties), so that which concept is hard cannot be memorised by its
    # position and has to be read from the learner's outcomes; the selection's students keep the data's curriculum
    randomised_curricula: bool = False
    interactions: int = EVALUATION_INTERACTIONS  # reviews a student; the pipeline passes the training spec's

    def __post_init__(self) -> None:
        for name in ("rounds", "students", "updates", "interactions", "select_every", "selection_students"):
            if getattr(self, name) < 1:
                raise ValueError(f"policy gradient: {name} must be at least 1, got {getattr(self, name)}")
        if not 2 <= self.samples <= MAX_SAMPLES:
            raise ValueError(f"policy gradient: samples must be at least 2 (the leave-one-out baseline) and at most "
                             f"{MAX_SAMPLES} (each draws from its own stream of the round's seed), got {self.samples}")
        if not self.temperature > 0:
            raise ValueError(f"policy gradient: temperature must be > 0, got {self.temperature}")
        if not self.learning_rate > 0 or not self.grad_clip > 0:
            raise ValueError("policy gradient: learning_rate and grad_clip must be > 0")
        if self.steps_per_episode < 0:
            raise ValueError(f"policy gradient: steps_per_episode must be >= 0, got {self.steps_per_episode}")
        object.__setattr__(self, "families", parse_families(list(self.families), field="policy gradient families"))
        if self.selection not in SELECTIONS:
            raise ValueError(f"policy gradient: selection must be one of {list(SELECTIONS)}, got {self.selection!r}")
        if self.mixed_rounds and self.students < len(self.families):
            raise ValueError(f"policy gradient: mixed rounds need at least one student per family, got "
                             f"{self.students} students for {len(self.families)} families")

    def episode_bytes(self, state_dim: int) -> int:
        """Bytes of a round's recorded states (float32 [samples, students, interactions, state_dim]), the largest
        part of what a round holds (the pipeline's memory check)."""
        return 4 * self.samples * self.students * self.interactions * int(state_dim)


@dataclass(frozen=True)
class Episodes:
    """``samples`` closed loops of the same students: what the policy saw and did, and the returns.

    states float32 [samples, students, T, S] (the encoder's), returns_to_go float32 [samples, students, T] (target -
    reward so far, as fed), actions int64 [samples, students, T], returns float64 [samples, students] (mean true recall
    FINAL_RECALL_DELAY_S after the last review)."""

    states: np.ndarray
    returns_to_go: np.ndarray
    actions: np.ndarray
    returns: np.ndarray


class _Recording(DecisionTransformerPolicy):
    """The evaluation's DT policy sampling at a temperature, recording each step's states, return-to-go and action."""

    def __init__(self, lite: DTLite, *, num_learners: int, num_concepts: int, temperature: float,
                 rng: np.random.Generator) -> None:
        super().__init__(model=lite, num_learners=num_learners, num_concepts=num_concepts, rng=rng,
                         temperature=temperature)
        self.seen_states: list[np.ndarray] = []
        self.seen_rtg: list[np.ndarray] = []
        self.taken: list[np.ndarray] = []

    def select(self, obs):
        self.seen_states.append(np.asarray(obs.states, dtype=np.float32).copy())
        self.seen_rtg.append((self.target_return - obs.cumulative_reward).astype(np.float32))
        actions = super().select(obs)
        self.taken.append(actions.copy())
        return actions


def rollout_sample(lite: DTLite, *, family: str, students: int, interactions: int, seed: int, sample: int,
                   temperature: float, curriculum_seed: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The closed loop of ``rollouts``' sample number ``sample``: (states float32 [students, T, S], returns-to-go
    float32 [students, T], actions int64 [students, T], returns float64 [students]). One BLAS thread. Family
    "fitted": the students the policy's fitted FSRS-6 encoder describes (``StudentsLike.from_encoder``: the
    evaluation's "fitted" students after synthetic training); ValueError when its encoder has no fitted FSRS-6.
    ``curriculum_seed``: the students' curriculum (``SimulatorConfig.curriculum_seed``; None: the default one)."""
    num_concepts = int(lite.config["action_dim"])
    like = StudentsLike.from_encoder(lite.config["encoder"]) if family == FITTED else None
    with limited_threads(EVALUATION_THREADS):
        cohort = make_cohort(family=family, students_like=like, num_students=students, num_concepts=num_concepts,
                             interactions=interactions, seed=seed, held_out=False,
                             config=None if curriculum_seed is None else SimulatorConfig(curriculum_seed=curriculum_seed))
        policy = _Recording(lite, num_learners=students, num_concepts=num_concepts, temperature=temperature,
                            rng=policy_rng(seed=seed * MAX_SAMPLES + sample, held_out=False, name="policy_gradient"))
        run_policies(cohort=cohort, groups=[(policy, np.arange(students))],
                     encoder=StateEncoder(EncoderConfig.from_dict(lite.config["encoder"])), rewards=True)
        final = cohort.recall_probability(cohort.schedule()[:, -1] + FINAL_RECALL_DELAY_S)
    return (np.stack(policy.seen_states, axis=1), np.stack(policy.seen_rtg, axis=1), np.stack(policy.taken, axis=1),
            final.mean(axis=1))


def rollouts(lite: DTLite, *, family: str, students: int, interactions: int, samples: int, seed: int,
             temperature: float, pool: Executor | None = None, curriculum_seed: int | None = None) -> Episodes:
    """``samples`` closed loops of ``lite`` sampling at ``temperature`` on the same ``students`` training-domain
    students of ``family`` (seed ``seed``; policy draws from ``simulator.policy_rng(seed=seed x MAX_SAMPLES + k)``),
    one BLAS thread each, as the evaluation (``rollout_sample``); with ``pool`` (``cpu_threads.worker_pool``) the
    samples run in its processes, with the same result. ValueError for an unknown family."""
    runs = [functools.partial(rollout_sample, lite, family=family, students=students, interactions=interactions,
                              seed=seed, sample=k, temperature=temperature, curriculum_seed=curriculum_seed)
            for k in range(samples)]
    return _stacked(_run_all(runs, pool))


def _run_all(runs: list[Callable[[], Any]], pool: Executor | None) -> list[Any]:
    """Each closed loop's result, in order: here, or all submitted to ``pool`` at once."""
    return [run() for run in runs] if pool is None else [f.result() for f in [pool.submit(run) for run in runs]]


def _stacked(parts: list[tuple[np.ndarray, ...]]) -> Episodes:
    """The Episodes of ``rollout_sample`` results, one per sample (a new leading samples axis)."""
    return Episodes(*(np.stack(column) for column in zip(*parts)))


def family_shares(students: int, families: int) -> list[int]:
    """``students`` split between ``families`` as equally as they divide (the first ones one more): [families] ints
    summing to ``students``. ValueError when a family would get none."""
    if families < 1 or students < families:
        raise ValueError(f"cannot split {students} students between {families} families, at least one each")
    return [students // families + (1 if k < students % families else 0) for k in range(families)]


def mixed_rollouts(lite: DTLite, *, families: tuple[str, ...], students: int, interactions: int, samples: int,
                   seed: int, temperature: float, pool: Executor | None = None,
                   curriculum_seed: int | None = None) -> tuple[Episodes, np.ndarray]:
    """``rollouts`` of every family in one round: ``family_shares(students, len(families))`` students of each (the
    cohort of seed ``seed`` of each family, so the families' learners share their traits), concatenated along the
    students axis in the order of ``families``; all ``samples x families`` closed loops submitted to ``pool`` at once.
    Returns the Episodes (students axis of length ``students``) and the advantages float64 [samples, students]:
    ``rloo_advantages`` of each family's returns on their own, so each family weighs the same in the gradient
    whatever the spread of its returns (the domain randomisation of Tobin et al. 2017, "Domain randomization for
    transferring deep neural networks from simulation to the real world", IROS, over memory laws, balanced). The
    families' shares are the same student ids of the same seed: the same people (traits and dice) under each law, a
    paired design, so a round of 256 students over 4 families holds 64 distinct people.
    ValueError for fewer students than families (``family_shares``), an unknown family, or "fitted" with an encoder
    that has no fitted FSRS-6."""
    shares = family_shares(students, len(families))
    runs = [functools.partial(rollout_sample, lite, family=family, students=share, interactions=interactions,
                              seed=seed, sample=k, temperature=temperature, curriculum_seed=curriculum_seed)
            for family, share in zip(families, shares) for k in range(samples)]
    parts = _run_all(runs, pool)
    per_family = [_stacked(parts[i * samples:(i + 1) * samples]) for i in range(len(families))]
    episodes = Episodes(*(np.concatenate(columns, axis=1) for columns in zip(
        *((e.states, e.returns_to_go, e.actions, e.returns) for e in per_family))))
    advantages = np.concatenate([rloo_advantages(e.returns) for e in per_family], axis=1)
    return episodes, advantages


def rloo_advantages(returns: np.ndarray) -> np.ndarray:
    """float64 [samples, students] -> the same shape: each sample's return minus the mean of the same student's other
    samples (Kool et al. 2019), divided by the standard deviation of all of them (1 when that is 0). ValueError for
    fewer than 2 samples or a non-2-D array."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 2 or returns.shape[0] < 2:
        raise ValueError(f"returns must be [samples >= 2, students], got shape {returns.shape}")
    k = returns.shape[0]
    advantage = returns - (returns.sum(axis=0, keepdims=True) - returns) / (k - 1)
    sd = float(advantage.std())
    return advantage / (sd if sd > 0 else 1.0)


# The longest stretch of an episode read in one forward (local attention): its attention mask and scores grow with
# the square of the steps, so longer episodes are read in overlapping segments of at most this many steps (100
# reviews, the evaluation's default, in one; 600 would need ~12 GB in one forward of 256 episodes).
SEGMENT_STEPS = 128


@dataclass(frozen=True)
class Windows:
    """The model's inputs for the contexts a rollout saw, episodes [E] of T steps, context K.

    ``segments``: one or more ((returns_to_go float32 [E, L], states float32 [E, L, S], actions int64 [E, L],
    timesteps int64 [E, L]), skip): consecutive steps read in one forward, of which the steps from position ``skip``
    on are counted (the ones before only give the counted ones their context). Full attention: one segment, steps
    0..K-1 (step j's logits at position j see exactly the rollout's context of j + 1 steps). Local attention
    (``episode_windows``): the whole episode, in segments of at most SEGMENT_STEPS when it is longer, each after the
    K - 1 steps before it. ``later``: the same four arrays over [E x m, K] for m later steps t per episode (each the
    window [t - K + 1, t]), or None; ``episode`` int64 [E x m] their episodes; ``weight`` = (T - K) / m."""

    segments: tuple[tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int], ...]
    later: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
    episode: np.ndarray | None
    weight: float


def _check_episodes(states: np.ndarray, returns_to_go: np.ndarray, actions: np.ndarray) -> tuple[int, int]:
    E, T = actions.shape
    if returns_to_go.shape != (E, T) or states.shape[:2] != (E, T):
        raise ValueError(f"states [E, T, S], returns_to_go and actions [E, T] must agree: got {states.shape}, "
                         f"{returns_to_go.shape}, {actions.shape}")
    return E, T


def _span(states, returns_to_go, actions, lo: int, hi: int, max_timestep: int):
    steps = np.minimum(np.arange(lo, hi), max_timestep - 1).astype(np.int64)
    return (returns_to_go[:, lo:hi], states[:, lo:hi], actions[:, lo:hi],
            np.broadcast_to(steps, (actions.shape[0], hi - lo)).copy())


def window_batches(states: np.ndarray, returns_to_go: np.ndarray, actions: np.ndarray, *, context: int,
                   max_timestep: int, steps_per_episode: int, rng: np.random.Generator) -> Windows:
    """``Windows`` of episodes (states [E, T, S], returns_to_go [E, T], actions [E, T]) for a model with full
    attention: the first K steps, and later steps drawn uniformly without replacement from K..T-1 per episode.
    ValueError for mismatched shapes."""
    E, T = _check_episodes(states, returns_to_go, actions)
    K = min(context, T)
    first = ((_span(states, returns_to_go, actions, 0, K, max_timestep), 0),)
    if T <= K or steps_per_episode <= 0:
        return Windows(segments=first, later=None, episode=None, weight=0.0)
    m = min(steps_per_episode, T - K)
    chosen = np.stack([rng.choice(np.arange(K, T), size=m, replace=False) for _ in range(E)])  # [E, m]
    episode = np.repeat(np.arange(E), m)
    span = chosen.reshape(-1, 1) - (K - 1) + np.arange(K)  # [E m, K]
    rows = episode[:, None]
    later = (returns_to_go[rows, span], states[rows, span], actions[rows, span],
             np.minimum(span, max_timestep - 1).astype(np.int64))
    return Windows(segments=first, later=later, episode=episode, weight=(T - K) / m)


def episode_segments(states: np.ndarray, returns_to_go: np.ndarray, actions: np.ndarray, *, context: int,
                     max_timestep: int, segment_steps: int = SEGMENT_STEPS) -> Windows:
    """``Windows`` that read every step of each episode (arrays as window_batches') for a model with local attention:
    one segment when T <= ``segment_steps``, else segments whose counted steps tile 0..T-1, each read after the
    ``context`` - 1 steps before it (a step's logits need its own context only). ValueError for mismatched shapes or
    ``segment_steps`` <= ``context`` - 1."""
    _, T = _check_episodes(states, returns_to_go, actions)
    overlap = context - 1
    if segment_steps <= overlap:
        raise ValueError(f"segment_steps must exceed context - 1 = {overlap}, got {segment_steps}")
    if T <= segment_steps:
        return Windows(segments=((_span(states, returns_to_go, actions, 0, T, max_timestep), 0),), later=None,
                       episode=None, weight=0.0)
    segments, start, new = [], 0, segment_steps
    while start < T:
        lo = max(0, start - overlap)
        hi = min(T, start + new)
        segments.append((_span(states, returns_to_go, actions, lo, hi, max_timestep), start - lo))
        start, new = hi, segment_steps - overlap
    return Windows(segments=tuple(segments), later=None, episode=None, weight=0.0)


def episode_log_probs(model: DecisionTransformer, windows: Windows, *, temperature: float,
                      autocast: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
    """float32 [E]: each episode's sum_t log softmax(logits_t / temperature)[a_t] over its steps (``windows``'s
    segments exactly; with drawn later steps, those as windows.weight x the drawn ones: an unbiased estimate), with
    gradients."""
    autocast = autocast or contextlib.nullcontext()
    total = None
    for arrays, skip in windows.segments:
        rtg, states, actions, timesteps = (torch.as_tensor(np.ascontiguousarray(a)) for a in arrays)
        with autocast:
            logits = model.action_logits(rtg, states, actions, timesteps, whole_episode=True)
        logp = F.log_softmax(logits[:, skip:].float() / temperature, dim=-1)
        part = logp.gather(-1, actions[:, skip:].unsqueeze(-1)).squeeze(-1).sum(dim=1)
        total = part if total is None else total + part
    if windows.later is not None:
        rtg, states, actions, timesteps = (torch.as_tensor(np.ascontiguousarray(a)) for a in windows.later)
        with autocast:
            logits = model.action_logits(rtg, states, actions, timesteps, last_only=True)
        logp = F.log_softmax(logits.float() / temperature, dim=-1)
        taken = logp.gather(-1, actions[:, -1:]).squeeze(-1)
        total = total + windows.weight * torch.zeros_like(total).index_add_(
            0, torch.as_tensor(windows.episode), taken)
    return total


def episode_windows(model: DecisionTransformer, states: np.ndarray, returns_to_go: np.ndarray, actions: np.ndarray,
                    *, steps_per_episode: int, rng: np.random.Generator) -> Windows:
    """The ``Windows`` the gradient reads for ``model``: with local attention (``DTConfig.attention_window``) every
    step of every episode, exactly (``episode_segments``: each step's logits over a longer stretch are those of its
    own context, ``DecisionTransformer.action_logits(whole_episode=True)``), with no draw; with full attention the
    first context_length steps and ``steps_per_episode`` later windows drawn (``window_batches``). Arrays as
    window_batches'."""
    config = model.config
    if config.attention_window is not None:
        return episode_segments(states, returns_to_go, actions, context=config.context_length,
                                max_timestep=config.max_timestep)
    return window_batches(states, returns_to_go, actions, context=config.context_length,
                          max_timestep=config.max_timestep, steps_per_episode=steps_per_episode, rng=rng)


def lite_files_of(model: DecisionTransformer, *, concept_keys: list[str], encoder: dict,
                  target_return: float) -> dict[str, bytes]:
    """The DTLite pair of ``model``'s current weights, {WEIGHTS_FILE: npz bytes, CONFIG_FILE: JSON bytes}
    (``artifacts.dtlite_files``: the export's own files, in memory)."""
    return dtlite_files(model_config=model.checkpoint_config(),
                        weights={name: t.detach().cpu().float().numpy() for name, t in model.state_dict().items()},
                        concept_keys=concept_keys, encoder=encoder, target_return=target_return)


def lite_of(model: DecisionTransformer, *, concept_keys: list[str], encoder: dict, target_return: float) -> DTLite:
    """The DTLite of ``model``'s current weights (``lite_files_of``, loaded)."""
    files = lite_files_of(model, concept_keys=concept_keys, encoder=encoder, target_return=target_return)
    return DTLite.load(files[WEIGHTS_FILE], files[CONFIG_FILE])


def selection_recalls(lite: DTLite, *, families: tuple[str, ...], students: int, interactions: int,
                      seed: int) -> dict[str, float]:
    """Per family, the greedy policy's mean final true recall on ``students`` training-domain students of it (seed
    ``SELECTION_SEED_OFFSET + seed``, ``evaluation.final_recall(held_out=False)``), {family: float}. One thread.
    ValueError for an unknown family, or "fitted" with an encoder that has no fitted FSRS-6."""
    encoder = EncoderConfig.from_dict(lite.config["encoder"])
    with limited_threads(EVALUATION_THREADS):
        return {family: float(final_recall(
            policy_name="policy_gradient_selection", num_concepts=int(lite.config["action_dim"]), students=students,
            interactions=interactions, seed=SELECTION_SEED_OFFSET + seed, encoder=encoder, model=lite, family=family,
            held_out=False).mean()) for family in families}


def selection_references(lite: DTLite, *, families: tuple[str, ...], students: int, interactions: int,
                         seed: int) -> dict[str, float]:
    """Per family, the best heuristic's (``evaluation.HEURISTICS``) mean final true recall on the selection's students
    (the same cohort as ``selection_recalls``), {family: float}: what the "worst_margin" selection measures the
    policy against. One thread. ValueError for an unknown family, or "fitted" with an encoder that has no fitted
    FSRS-6."""
    encoder = EncoderConfig.from_dict(lite.config["encoder"])
    with limited_threads(EVALUATION_THREADS):
        return {family: max(float(final_recall(
            policy_name=name, num_concepts=int(lite.config["action_dim"]), students=students,
            interactions=interactions, seed=SELECTION_SEED_OFFSET + seed, encoder=encoder, family=family,
            held_out=False).mean()) for name in HEURISTICS) for family in families}


def selection_score(lite: DTLite, *, families: tuple[str, ...], students: int, interactions: int, seed: int,
                    references: dict[str, float] | None = None) -> float:
    """The score ``fine_tune`` keeps the best weights by, from ``selection_recalls``: without ``references`` (the
    "mean" selection) their mean over ``families``; with them ("worst_margin", ``selection_references``) the smallest
    over the families of the policy's recall minus the family's best heuristic (the family where the policy stands
    worst against a simple schedule: issue 21's every-family target). One thread."""
    recalls = selection_recalls(lite, families=families, students=students, interactions=interactions, seed=seed)
    if references is None:
        return float(np.mean(list(recalls.values())))
    return min(recalls[family] - references[family] for family in families)


def fine_tune(model: DecisionTransformer, *, concept_keys: list[str], encoder: dict, target_return: float,
              config: PolicyGradientConfig, seed: int,
              optimizer: torch.optim.Optimizer | None = None,
              autocast: contextlib.AbstractContextManager | None = None,
              on_round: Callable[[int, dict[str, Any], DTLite], None] | None = None,
              processes: int | str = 1) -> list[dict[str, Any]]:
    """Fine-tune ``model`` in place for ``config.rounds`` rounds (module docstring) and leave it holding the weights
    that scored best on the selection students (the offline ones included); returns each round's figures (family,
    sampled return, the loss, the gradient's norm before clipping, "selection_score" on the rounds that were scored,
    "kept": True on the round whose weights were kept, round 0 being the offline model's). ``on_round(round,
    figures, lite)`` is called after each round with the DTLite of that round's weights (progress, evaluation). The
    model is left in eval mode. ``optimizer``: default AdamW at config.learning_rate without weight decay;
    ``autocast``: default the offline trainer's on the CPU (``trainer.training_autocast``: bfloat16 where the CPU has
    bfloat16 matrix units; the pipeline passes the recipe's).
    ``processes``: worker processes for a round's samples (``cpu_threads.pool_size``: "auto" one per core, at most
    ``config.samples``; 1 in this process), started once for the whole stage; the result is the same.
    ValueError for a bad ``processes``, or for the family "fitted" with an encoder that has no fitted FSRS-6."""
    from .trainer import training_autocast

    if autocast is None:
        autocast = training_autocast("cpu", cpu_bfloat16=None)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    rng = np.random.default_rng(seed)  # the episodes' order and the later steps drawn
    model.eval()
    lite = lite_of(model, concept_keys=concept_keys, encoder=encoder, target_return=target_return)

    def snapshot() -> dict[str, torch.Tensor]:  # the weights now, kept apart from the optimiser's updates
        return {name: t.detach().clone() for name, t in model.state_dict().items()}

    references = (selection_references(lite, families=config.families, students=config.selection_students,
                                       interactions=config.interactions, seed=seed)
                  if config.selection == "worst_margin" else None)

    def score(lite_now: DTLite) -> float:
        return selection_score(lite_now, families=config.families, students=config.selection_students,
                               interactions=config.interactions, seed=seed, references=references)

    workers = pool_size(processes, parts=config.samples)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(worker_pool(workers, preload=[__name__])) if workers > 1 else None
        best = (score(lite), 0, snapshot())
        history: list[dict[str, Any]] = [{"round": 0, "selection_score": round(best[0], 5)}]
        for round_ in range(1, config.rounds + 1):
            round_seed = ROUND_SEED_BASE * round_ + seed
            curriculum = round_seed + CURRICULUM_SEED_OFFSET if config.randomised_curricula else None
            if config.mixed_rounds:
                family = ",".join(config.families)
                episodes, advantage = mixed_rollouts(
                    lite, families=config.families, students=config.students, interactions=config.interactions,
                    samples=config.samples, seed=round_seed, temperature=config.temperature, pool=pool,
                    curriculum_seed=curriculum)
            else:
                family = config.families[(round_ - 1) % len(config.families)]
                episodes = rollouts(lite, family=family, students=config.students, interactions=config.interactions,
                                    samples=config.samples, seed=round_seed, temperature=config.temperature,
                                    pool=pool, curriculum_seed=curriculum)
                advantage = rloo_advantages(episodes.returns)
            advantage = advantage.reshape(-1)
            states = episodes.states.reshape(-1, *episodes.states.shape[2:])
            rtg = episodes.returns_to_go.reshape(-1, episodes.returns_to_go.shape[-1])
            actions = episodes.actions.reshape(-1, episodes.actions.shape[-1])
            losses, norms = [], []
            for part in np.array_split(rng.permutation(actions.shape[0]), config.updates):
                windows = episode_windows(model, states[part], rtg[part], actions[part],
                                          steps_per_episode=config.steps_per_episode, rng=rng)
                log_probs = episode_log_probs(model, windows, temperature=config.temperature, autocast=autocast)
                loss = -(torch.as_tensor(advantage[part], dtype=torch.float32) * log_probs).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)))
                optimizer.step()
                losses.append(float(loss.detach()))
            lite = lite_of(model, concept_keys=concept_keys, encoder=encoder, target_return=target_return)
            figures = {"round": round_, "family": family, "sampled_return": round(float(episodes.returns.mean()), 5),
                       "sd_between_samples": round(float(episodes.returns.std(axis=0).mean()), 5),
                       "loss": round(float(np.mean(losses)), 5), "grad_norm": round(float(np.mean(norms)), 4)}
            if round_ % config.select_every == 0 or round_ == config.rounds:
                figures["selection_score"] = round(score(lite), 5)
                if figures["selection_score"] > best[0]:
                    best = (figures["selection_score"], round_, snapshot())
            history.append(figures)
            if on_round is not None:
                on_round(round_, figures, lite)
    model.load_state_dict(best[2])
    model.eval()
    history[best[1]]["kept"] = True
    return history
