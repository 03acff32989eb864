"""Closed-loop evaluation: a policy version and the baselines teach the same held-out simulated students.
NumPy only.

Held out: cohorts are drawn in the simulator's held-out domain (``Cohort(held_out=True)``), a random stream that
no training cohort uses whatever its seed. Paired: every policy meets the same students, the same review times
and the same dice. Metric ``mean_final_recall``: per student the mean over concepts of the simulator's TRUE recall
``FINAL_RECALL_DELAY_S`` (one day) after the student's last review, averaged over students; the 95% interval is
the normal approximation ``mean +- 1.96 * std / sqrt(n)`` (sample std).

Two populations: the built-in students (``simulator.Cohort``: ``results``) and, when fitted FSRS-6 parameters
exist (given, or the policy encoder's), students like the curriculum's own (``simulator.FsrsCohort``:
``students_like``, the same shape). In each the oracle reads that population's true memory.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .encoder import EncoderConfig, StateEncoder
from .policies import Observation, Policy, make_policy
from .simulator import SimulatorConfig, StudentsLike, make_cohort, policy_rng, run_policies
from .trajectories import DEFAULT_MAX_TIMESTEP

METRIC = "mean_final_recall"
FINAL_RECALL_DELAY_S = 86400.0
BASELINES = ("random", "round_robin", "leitner", "lowest_recall", "oracle")
EVALUATION_SEED = 1234  # the default held-out cohort: every version is compared on the same students


class ActionModel(Protocol):
    """What evaluation needs of a policy version (``dtlite.DTLite`` has it)."""

    config: dict[str, Any]

    def select_action(
        self, returns_to_go: np.ndarray, states: np.ndarray, actions: np.ndarray, timesteps: np.ndarray,
        attention_mask: np.ndarray | None = None, candidates: Any = None, temperature: float | None = None,
        top_k: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


class DecisionTransformerPolicy(Policy):
    """A Decision Transformer driven batched over learners: it conditions on target_return - reward so far and on
    the last context_length steps (states, actions, returns-to-go), the last one being the decision now."""

    name = "dt"

    def __init__(
        self, *, model: ActionModel, num_learners: int, num_concepts: int, rng: np.random.Generator
    ) -> None:
        super().__init__(num_learners=num_learners, num_concepts=num_concepts, rng=rng)
        self.model = model
        self.context_length = int(model.config["context_length"])
        self.target_return = float(model.config["target_return"])
        self.max_timestep = int(model.config.get("max_timestep", DEFAULT_MAX_TIMESTEP))
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.returns_to_go: list[np.ndarray] = []

    def select(self, obs: Observation) -> np.ndarray:
        self.states.append(obs.states)
        self.actions.append(np.zeros(self.num_learners, dtype=np.int64))  # placeholder at the decision position
        self.returns_to_go.append((self.target_return - obs.cumulative_reward).astype(np.float32))
        window = slice(-self.context_length, None)
        steps = len(self.states[window])
        first = obs.step - steps + 1
        timesteps = np.minimum(np.arange(first, obs.step + 1), self.max_timestep - 1)
        # Learners move in lockstep, so every context has the same length: no padding is needed.
        actions, _ = self.model.select_action(
            np.stack(self.returns_to_go[window], axis=1),
            np.stack(self.states[window], axis=1),
            np.stack(self.actions[window], axis=1),
            np.broadcast_to(timesteps, (self.num_learners, steps)).astype(np.int64),
            attention_mask=np.ones((self.num_learners, steps), dtype=np.int64),
        )
        # Memory stays bounded by the context, whatever the number of interactions.
        del self.states[: -self.context_length], self.actions[: -self.context_length]
        del self.returns_to_go[: -self.context_length]
        return np.asarray(actions, dtype=np.int64)

    def observe(self, *, concepts: np.ndarray, t: np.ndarray, correct: np.ndarray, rewards: np.ndarray) -> None:
        self.actions[-1] = np.asarray(concepts, dtype=np.int64)


def final_recall(
    *,
    policy_name: str,
    num_concepts: int,
    students: int,
    interactions: int,
    seed: int,
    encoder: EncoderConfig,
    model: ActionModel | None = None,
    simulator: SimulatorConfig | None = None,
    students_like: StudentsLike | None = None,
) -> np.ndarray:
    """Each held-out student's mean true recall FINAL_RECALL_DELAY_S after the last review, float64 [students]
    (the built-in students, or ``students_like``'s)."""
    cohort = make_cohort(students_like=students_like, num_students=students, num_concepts=num_concepts,
                         interactions=interactions, seed=seed, held_out=True, config=simulator)
    rng = policy_rng(seed=seed, held_out=True, name=policy_name)
    if model is not None:
        policy: Policy = DecisionTransformerPolicy(
            model=model, num_learners=students, num_concepts=num_concepts, rng=rng
        )
    else:
        policy = make_policy(policy_name, num_learners=students, num_concepts=num_concepts, rng=rng)
    run_policies(cohort=cohort, groups=[(policy, np.arange(students))], encoder=StateEncoder(encoder))
    return cohort.recall_probability(cohort.schedule()[:, -1] + FINAL_RECALL_DELAY_S).mean(axis=1)


def evaluate(
    *,
    policy: ActionModel | None = None,
    num_concepts: int,
    students: int = 200,
    interactions: int = 100,
    seed: int = EVALUATION_SEED,
    concept_keys: list[str] | None = None,
    encoder: EncoderConfig | dict | None = None,
    simulator: SimulatorConfig | None = None,
    students_like: StudentsLike | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """The policy (when given, as "dt") and the baselines on the same held-out students, as one JSON-able dict:
    ``{"metric", "students", "seed", "results": {name: {"mean", "ci95"}}}`` for the built-in students, plus
    ``"students_like": {name: {"mean", "ci95"}}`` for students like the curriculum's own when ``students_like`` is
    given or, by default, the encoder's fitted FSRS-6 describes them (``StudentsLike.from_encoder``).

    The encoder defaults to the policy's (``policy.config["encoder"]``), else ``EncoderConfig(num_concepts)``:
    a policy must see the states it was trained on. ``on_progress(done, total, name)`` is called after each
    policy's run (over both populations).
    """
    if students < 2:
        raise ValueError(f"students: expected at least 2 for a confidence interval, got {students}")
    if concept_keys is not None and len(concept_keys) != num_concepts:
        raise ValueError(f"concept_keys: {len(concept_keys)} keys for num_concepts={num_concepts}")
    encoder_config = _encoder_config(policy=policy, encoder=encoder, num_concepts=num_concepts)
    if policy is not None:
        _check_policy(policy.config, encoder_config=encoder_config, concept_keys=concept_keys)

    if students_like is None:
        students_like = StudentsLike.from_encoder(encoder_config)
    runs = [("dt", policy)] if policy is not None else []
    runs += [(name, None) for name in BASELINES]
    populations = [("results", None)] + ([("students_like", students_like)] if students_like is not None else [])
    out: dict[str, Any] = {"metric": METRIC, "students": students, "seed": seed}
    done, total = 0, len(runs) * len(populations)
    for key, population in populations:
        results = {}
        for name, model in runs:
            values = final_recall(
                policy_name=name, num_concepts=num_concepts, students=students, interactions=interactions, seed=seed,
                encoder=encoder_config, model=model, simulator=simulator, students_like=population,
            )
            mean = float(values.mean())
            half_width = 1.96 * float(values.std(ddof=1)) / np.sqrt(students)
            results[name] = {"mean": mean, "ci95": [float(mean - half_width), float(mean + half_width)]}
            done += 1
            if on_progress is not None:
                on_progress(done, total, name)
        out[key] = results
    return out


def _encoder_config(
    *, policy: ActionModel | None, encoder: EncoderConfig | dict | None, num_concepts: int
) -> EncoderConfig:
    if isinstance(encoder, EncoderConfig):
        config = encoder
    elif encoder is not None:
        config = EncoderConfig.from_dict(encoder)
    elif policy is not None and policy.config.get("encoder"):
        config = EncoderConfig.from_dict(policy.config["encoder"])
    else:
        config = EncoderConfig(num_concepts=num_concepts)
    if config.num_concepts != num_concepts:
        raise ValueError(f"encoder: made for {config.num_concepts} concepts, not num_concepts={num_concepts}")
    return config


def _check_policy(config: dict, *, encoder_config: EncoderConfig, concept_keys: list[str] | None) -> None:
    for key in ("context_length", "target_return", "state_dim", "action_dim"):
        if key not in config:
            raise ValueError(f"policy config: {key!r} is missing")
    state_dim, num_concepts = encoder_config.state_dim, encoder_config.num_concepts
    if config["state_dim"] != state_dim:
        raise ValueError(f"policy config: state_dim {config['state_dim']}, the encoder's is {state_dim}")
    if config["action_dim"] != num_concepts:
        raise ValueError(f"policy config: action_dim {config['action_dim']}, num_concepts is {num_concepts}")
    policy_keys = config.get("concept_keys")
    if concept_keys is not None and policy_keys and list(policy_keys) != list(concept_keys):
        raise ValueError("concept_keys: differ from the policy's concept_keys (action order)")
