"""Closed-loop evaluation: a policy version and the baselines teach the same held-out simulated students.
NumPy only.

Held out: cohorts are drawn in the simulator's held-out domain (``Cohort(held_out=True)``), a random stream that
no training cohort uses whatever its seed. Paired: every policy meets the same students, the same review times
and the same dice. Metric ``mean_final_recall``: per student the mean over concepts of the simulator's TRUE recall
``FINAL_RECALL_DELAY_S`` (one day) after the student's last review, averaged over students; the 95% interval is
the normal approximation ``mean +- 1.96 * std / sqrt(n)`` (sample std).

Populations: the built-in students (``students.Cohort``: ``results``) and, when fitted FSRS-6 parameters
exist (given, or the policy encoder's), the students they describe (``students.FsrsCohort``: ``students_like``, the
same shape): like the curriculum's own when fitted to its review log, like the training cohort when the encoder was
fitted to synthetic training's simulated pilot (the caller says which: ``training.pipeline.evaluate_export``). In each the oracle reads that population's true memory (it picks the review
with the highest expected true recall one day later: a greedy one-step rule, the ceiling on the built-in students
but not on every family; on ACT-R students it is below round robin).

Student families (``families``, see ``students``): one block per family, ``"families": {NAME: {policy: {"mean",
"ci95"}, ..., "paired": {policy: {"mean", "ci95"}}, "best_behaviour": NAME, "gap_closed": x}}``. Besides the
baselines each family is taught by the behaviour policies of the training mix without their exploration noise and
per-learner variation (``behaviour_references``: random, leitner and target_recall for the default mix), and
``best_behaviour`` names the best of them there. ``paired``: per-student differences dt - policy on the same
students, review times and dice (a paired design: the interval is the normal approximation on the differences,
much narrower than the two policies' own intervals), against every baseline and every behaviour reference.
``gap_closed = (dt - lowest_recall) / (oracle - lowest_recall)``, the share of the lowest_recall-to-oracle gap the
policy closes; None without a policy or where the oracle is not above lowest_recall and every other policy but the
DT (then it is no ceiling).
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any, Literal, Protocol

import numpy as np

from .cpu_threads import AUTO, pool_size, sized_threads, worker_pool
from .encoder import EncoderConfig, StateEncoder
from .policies import Observation, Policy, make_policy, normalise_mix
from .seeds import SEED_MAX, SEED_MIN
from .simulator import SimulatorConfig, StudentCohort, StudentsLike, make_cohort, policy_rng, run_policies
from .students import BUILTIN, FITTED, parse_families
from .trajectories import DEFAULT_MAX_TIMESTEP

METRIC = "mean_final_recall"
FINAL_RECALL_DELAY_S = 86400.0
BASELINES = ("random", "round_robin", "leitner", "lowest_recall", "oracle")
# Reported after BASELINES (whose keys stay as they are): the planning behaviour policy (policies.PlannerPolicy,
# one-step lookahead on the encoder's memory model), a teacher the Decision Transformer may learn from.
EXTRA_BASELINES = ("planner",)
HEURISTICS = ("random", "round_robin", "leitner", "lowest_recall")  # the baselines that are not the oracle
# the keys of a family's block that are not a policy's result
FAMILY_SUMMARY_KEYS = ("paired", "best_behaviour", "gap_closed")
# When the closed loops go to worker processes (evaluate(processes=N)): a pool costs about a second to start (fork
# server, workers, the policy shipped to each), so a run is spread only over parts worth more. A default-size DT
# (then hidden 128, 4 layers, context 20, 20 concepts) taught about 600 student-reviews/s on one core of the loaded
# 2-core development machine (50 students x 100 reviews: 8.2 s), the baselines 25 to 280 times as many (the planner
# is the slowest): POOL_PART_REVIEWS DT student-reviews were ~2.5 s of work, a baseline's run counts BASELINE_SHARE
# of a DT's. Today's default model (hidden 64, 2 layers, per-step cost about a third) makes a part nearer 1 s;
# measured again with it (bench/evaluation_processes.py --runs 1 auto, four families, 100 reviews, AMD EPYC 2-core
# machine, idle, 2026-12-07): 5 students stay in this process (3.5 s), 10 go to 2 workers at 0.64x the one-process
# time (4.3 -> 2.7 s), 30 at 0.59x (8.4 -> 4.9 s): the pool pays from where the constant starts it, which stands.
POOL_PART_REVIEWS = 1_500
BASELINE_SHARE = 0.05
# The evaluation's defaults and bounds, declared here once: evaluate_policy's flags, the training spec's evaluation
# parameters (and the reviews per learner it shares with them) and a curriculum's evaluation protocol import them
# (tests/test_layers.py fails on a second declaration).
EVALUATION_STUDENTS = 200  # held-out simulated students
EVALUATION_SEED = 1234  # the default held-out cohort: every version is compared on the same students
EVALUATION_INTERACTIONS = 100  # reviews per student
# the student families a trained policy is evaluated on (plus "fitted" where a curriculum's FSRS-6 is known)
EVALUATION_FAMILIES = ("builtin", "fsrs6", "actr", "hlr")
# (low, high), inclusive. At least 2 students: a 95% interval needs a sample standard deviation.
EVALUATION_BOUNDS: dict[str, tuple[int, int]] = {
    "students": (2, 100_000), "seed": (SEED_MIN, SEED_MAX), "interactions": (1, 100_000),
}


def check_evaluation_setting(name: str, value: int) -> None:
    """Raise ValueError "NAME: expected LOW to HIGH, got VALUE" when an evaluation setting ("students", "seed" or
    "interactions") is outside EVALUATION_BOUNDS (booleans and non-integers are refused too); KeyError for another
    name."""
    low, high = EVALUATION_BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name}: expected {low} to {high}, got {value!r}")


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
    the last context_length steps (states, actions, returns-to-go), the last one being the decision now.

    A DTLite with local attention (``attention_window`` in its config) is driven by its per-step path: the first
    decision is ``DTLite.prefill``'s, each later one ``DTLite.step``'s, computing only the step's 3 new tokens against
    the cached keys and values (equal to the full forward on the last context_length steps to float32 rounding;
    tests/training/rl/test_evaluation.py). Any other ``model`` is asked ``select_action`` on the whole context every
    step. ``temperature`` None: the argmax, as served; > 0: each action drawn from softmax(logits / temperature) with
    ``rng`` (the policy-gradient stage's sampled policy). ValueError for a temperature <= 0."""

    name = "dt"
    uses_states = True
    uses_rewards = True

    def __init__(
        self, *, model: ActionModel, num_learners: int, num_concepts: int, rng: np.random.Generator,
        temperature: float | None = None,
    ) -> None:
        super().__init__(num_learners=num_learners, num_concepts=num_concepts, rng=rng)
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0 (None: the argmax), got {temperature}")
        self.model = model
        self.temperature = temperature
        self.context_length = int(model.config["context_length"])
        self.target_return = float(model.config["target_return"])
        self.max_timestep = int(model.config.get("max_timestep", DEFAULT_MAX_TIMESTEP))
        self.per_step = model.config.get("attention_window") is not None and hasattr(model, "step")
        self.step_state: Any = None  # DTLite.StepState after the last decision (the per-step path)
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.returns_to_go: list[np.ndarray] = []

    def _sampling(self) -> dict[str, Any]:
        return {} if self.temperature is None else {"temperature": self.temperature, "rng": self.rng}

    def select(self, obs: Observation) -> np.ndarray:
        return_to_go = (self.target_return - obs.cumulative_reward).astype(np.float32)
        if self.per_step:
            timestep = np.full(self.num_learners, min(obs.step, self.max_timestep - 1), dtype=np.int64)
            if self.step_state is None:
                self.step_state = self.model.prefill(
                    return_to_go[:, None], obs.states[:, None], np.zeros((self.num_learners, 1), np.int64),
                    timestep[:, None])
            else:
                self.step_state = self.model.step(self.step_state, self.actions[-1], return_to_go, obs.states,
                                                  timestep)
            self.actions = [np.zeros(self.num_learners, dtype=np.int64)]  # observe() writes the action taken
            actions, _ = self.model.choose(self.step_state.logits.copy(), **self._sampling())
            return np.asarray(actions, dtype=np.int64)
        self.states.append(obs.states)
        self.actions.append(np.zeros(self.num_learners, dtype=np.int64))  # placeholder at the decision position
        self.returns_to_go.append(return_to_go)
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
            **self._sampling(),
        )
        # Memory stays bounded by the context, whatever the number of interactions.
        del self.states[: -self.context_length], self.actions[: -self.context_length]
        del self.returns_to_go[: -self.context_length]
        return np.asarray(actions, dtype=np.int64)

    def observe(self, *, concepts: np.ndarray, t: np.ndarray, correct: np.ndarray,
                rewards: np.ndarray | None) -> None:
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
    family: str | None = None,
    held_out: bool = True,
) -> np.ndarray:
    """Each held-out student's mean true recall FINAL_RECALL_DELAY_S after the last review, float64 [students]
    (``family``'s students, see ``students.make_cohort``: default the built-in ones, or ``students_like``'s).
    ``held_out`` False: training-domain students and policy draws instead (a training stage's own yardstick, e.g.
    the policy-gradient stage's selection; never a reported figure). ``family`` "fitted" without ``students_like``:
    the students ``encoder``'s fitted FSRS-6 describes (``StudentsLike.from_encoder``, as ``evaluate`` names them;
    ValueError from make_cohort when the encoder has none)."""
    if family == FITTED and students_like is None:
        students_like = StudentsLike.from_encoder(encoder)
    cohort = make_cohort(family=family, students_like=students_like, num_students=students, num_concepts=num_concepts,
                         interactions=interactions, seed=seed, held_out=held_out, config=simulator)
    rng = policy_rng(seed=seed, held_out=held_out, name=policy_name)
    if model is not None:
        policy: Policy = DecisionTransformerPolicy(
            model=model, num_learners=students, num_concepts=num_concepts, rng=rng
        )
    else:
        policy = make_policy(policy_name, num_learners=students, num_concepts=num_concepts, rng=rng)
    return closed_loop_final_recall(cohort=cohort, policy=policy, encoder=encoder)


def closed_loop_final_recall(*, cohort: StudentCohort, policy: Policy, encoder: EncoderConfig) -> np.ndarray:
    """Drive every student of ``cohort`` with ``policy`` (one group of all of them, states from ``encoder``) for
    all its interactions, then each student's mean true recall FINAL_RECALL_DELAY_S after the last review, float64
    [students]: ``final_recall``'s closed loop, for a policy built by the caller."""
    # rewards only for a policy that reads them (the DT's returns-to-go): the score is the true recall below
    run_policies(cohort=cohort, groups=[(policy, np.arange(cohort.num_students))], encoder=StateEncoder(encoder),
                 rewards=False)
    return cohort.recall_probability(cohort.schedule()[:, -1] + FINAL_RECALL_DELAY_S).mean(axis=1)


def behaviour_references(mix: dict[str, float] | None = None) -> tuple[str, ...]:
    """The behaviour policies of a training mix (default ``policies.DEFAULT_POLICY_MIX``) without their exploration
    noise ("noisy_") and per-learner variation ("varied_"), in the mix's order: what a policy trained on the mix
    imitates at its best. ("random", "leitner", "target_recall") for the default mix."""
    names = []
    for name in normalise_mix(mix):
        for prefix in ("noisy_", "varied_"):
            name = name.removeprefix(prefix)
        names.append(name)
    return tuple(dict.fromkeys(names))


def interval(values: np.ndarray) -> dict[str, Any]:
    """``{"mean": m, "ci95": [lo, hi]}`` of float values [n] (n >= 2): the normal approximation
    ``mean +- 1.96 * std / sqrt(n)`` with the sample std."""
    mean = float(values.mean())
    half_width = 1.96 * float(values.std(ddof=1)) / np.sqrt(len(values))
    return {"mean": mean, "ci95": [float(mean - half_width), float(mean + half_width)]}


def gap_closed(*, dt: float, lowest_recall: float, oracle: float, others: tuple[float, ...] = ()) -> float | None:
    """``(dt - lowest_recall) / (oracle - lowest_recall)``: the share of the lowest_recall-to-oracle gap closed
    (1 = as good as the oracle, 0 = as lowest_recall, negative below it); None when the oracle is no ceiling:
    oracle <= lowest_recall, or <= any of ``others`` (the other policies' means, the DT's excepted: the greedy
    oracle can fall below a baseline, e.g. on ACT-R students or on a large deck's students, and a share of a gap
    it does not bound says nothing)."""
    if oracle <= max((lowest_recall, *others)):
        return None
    return float((dt - lowest_recall) / (oracle - lowest_recall))


def family_block(values: dict[str, np.ndarray], *, references: tuple[str, ...]) -> dict[str, Any]:
    """One family's block from each policy's per-student final recall (float64 [students], the same students):
    every policy's ``interval``, and with a "dt": ``paired`` (dt - policy, per student, for every other policy),
    ``best_behaviour`` (the reference with the highest mean) and ``gap_closed`` (None without the oracle or
    lowest_recall, or where another policy than the DT scores at least the oracle's mean)."""
    block: dict[str, Any] = {name: interval(v) for name, v in values.items()}
    present = [name for name in references if name in values]
    block["best_behaviour"] = max(present, key=lambda name: block[name]["mean"]) if present else None
    block["paired"] = {}
    block["gap_closed"] = None
    if "dt" in values:
        block["paired"] = {name: interval(values["dt"] - v) for name, v in values.items() if name != "dt"}
        if "oracle" in values and "lowest_recall" in values:
            others = tuple(block[name]["mean"] for name in values if name not in ("dt", "oracle", "lowest_recall"))
            block["gap_closed"] = gap_closed(dt=block["dt"]["mean"], lowest_recall=block["lowest_recall"]["mean"],
                                             oracle=block["oracle"]["mean"], others=others)
    return block


@sized_threads  # threads=N (default cpu_threads.EVALUATION_THREADS): the BLAS / PyTorch threads it runs with
def evaluate(
    *,
    policy: ActionModel | None = None,
    num_concepts: int,
    students: int = EVALUATION_STUDENTS,
    interactions: int = EVALUATION_INTERACTIONS,
    seed: int = EVALUATION_SEED,
    concept_keys: list[str] | None = None,
    encoder: EncoderConfig | dict | None = None,
    simulator: SimulatorConfig | None = None,
    students_like: StudentsLike | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    families: str | tuple[str, ...] | list[str] | None = None,
    behaviour_mix: dict[str, float] | None = None,
    processes: int | Literal["auto"] = AUTO,
) -> dict:
    """The policy (when given, as "dt"), the baselines and the extra ones (EXTRA_BASELINES) on the same held-out
    students, as one JSON-able dict:
    ``{"metric", "students", "seed", "results": {name: {"mean", "ci95"}}}`` for the built-in students, plus
    ``"students_like": {name: {"mean", "ci95"}}`` for the fitted students when ``students_like`` is given or, by
    default, the encoder's fitted FSRS-6 describes them (``StudentsLike.from_encoder``), plus, when
    ``families`` is given ("builtin,fsrs6,actr,hlr" or names), ``"families": {NAME: family_block}`` (see the module
    docstring; the behaviour references from ``behaviour_mix``, default the default mix). "results" is the
    "builtin" family's policies and baselines, computed once.

    The encoder defaults to the policy's (``policy.config["encoder"]``), else ``EncoderConfig(num_concepts)``:
    a policy must see the states it was trained on. ``on_progress(done, total, name)`` is called after each
    policy's run (over all populations), in the order the runs finish (``closed_loop_count`` gives the total before
    the first run ends). ValueError naming the setting for students
    or interactions outside EVALUATION_BOUNDS, for an unknown family, for "fitted" without fitted parameters, or for
    ``processes`` neither "auto" nor a positive integer.

    ``processes``: the (population, policy) closed loops go to at most this many worker processes
    (``cpu_threads.worker_pool``: forkserver, one BLAS / PyTorch thread each, the policy pickled to them); "auto"
    (the default) is one per available core. The run stays in this process (with ``threads`` threads) on one core,
    in a daemonic process (a Celery prefork worker's child may not start processes), or when the work is too small
    to pay for a pool (``POOL_PART_REVIEWS``, ``BASELINE_SHARE``). The results are the same whatever the number:
    each closed loop is a function of its own arguments (students, dice and policy streams from the seed).
    """
    check_evaluation_setting("students", students)
    check_evaluation_setting("interactions", interactions)
    if concept_keys is not None and len(concept_keys) != num_concepts:
        raise ValueError(f"concept_keys: {len(concept_keys)} keys for num_concepts={num_concepts}")
    encoder_config = _encoder_config(policy=policy, encoder=encoder, num_concepts=num_concepts)
    if policy is not None:
        _check_policy(policy.config, encoder_config=encoder_config, concept_keys=concept_keys)
    chosen = () if families is None else parse_families(families)

    if students_like is None:
        students_like = StudentsLike.from_encoder(encoder_config)
    if FITTED in chosen and students_like is None:
        raise ValueError("families: 'fitted' needs a curriculum's fitted FSRS-6 (--students-like, or a policy whose "
                         "encoder was fitted)")
    references = behaviour_references(behaviour_mix)
    populations, runs = _populations(policy=policy, fitted=students_like is not None, chosen=chosen,
                                     references=references)
    out: dict[str, Any] = {"metric": METRIC, "students": students, "seed": seed}
    loops = [dict(policy_name=name, num_concepts=num_concepts, students=students, interactions=interactions,
                  seed=seed, encoder=encoder_config, model=model, simulator=simulator, students_like=students_like,
                  family=family)
             for _, family, population_runs in populations for name, model in population_runs]
    recall = _closed_loops(loops, processes=processes, on_progress=on_progress)
    blocks: dict[str, dict] = {}
    for key, family, population_runs in populations:
        values = {name: recall[(family, name)] for name, _ in population_runs}
        if key in ("results", "students_like"):
            out[key] = {name: interval(values[name]) for name, _ in runs}
        if family in chosen:
            blocks[family] = family_block(values, references=references)
    if chosen:
        out["families"] = {name: blocks[name] for name in chosen}
    return out


def _populations(
    *, policy: ActionModel | None, fitted: bool, chosen: tuple[str, ...], references: tuple[str, ...],
) -> tuple[list[tuple[str, str, list]], list[tuple[str, ActionModel | None]]]:
    """``evaluate``'s plan: the populations as (output key, family, [(policy name, model or None), ...]) and the
    runs every population has (the policy as "dt", the baselines and the extra ones). The built-in students are
    "results" and, when asked for, the "builtin" family; the fitted students ("students_like", family "fitted") when
    ``fitted``; then every other family of ``chosen``. A family's block adds the behaviour ``references``."""
    runs: list[tuple[str, ActionModel | None]] = [("dt", policy)] if policy is not None else []
    runs += [(name, None) for name in (*BASELINES, *EXTRA_BASELINES)]
    extra = [(name, None) for name in references if name not in (*BASELINES, *EXTRA_BASELINES)]
    populations: list[tuple[str, str, list]] = [("results", BUILTIN, runs + (extra if BUILTIN in chosen else []))]
    if fitted:
        populations.append(("students_like", FITTED, runs + (extra if FITTED in chosen else [])))
    populations += [(name, name, runs + extra) for name in chosen if name not in (BUILTIN, FITTED)]
    return populations, runs


def closed_loop_count(
    *, policy: bool, fitted: bool, families: str | tuple[str, ...] | list[str] | None = None,
    behaviour_mix: dict[str, float] | None = None,
) -> int:
    """How many closed loops ``evaluate`` runs (the ``total`` its ``on_progress`` reports, over every population),
    before running any: with a policy or not, with the fitted students ("students_like": given, or the policy
    encoder's fitted FSRS-6) or not, for ``families`` and ``behaviour_mix`` as ``evaluate`` takes them. A caller
    that announces the evaluation's progress before the first loop ends announces this total."""
    chosen = () if families is None else parse_families(families)
    populations, _ = _populations(policy=object() if policy else None, fitted=fitted, chosen=chosen,
                                  references=behaviour_references(behaviour_mix))
    return sum(len(population_runs) for _, _, population_runs in populations)


def _closed_loops(
    loops: list[dict[str, Any]], *, processes: int | Literal["auto"],
    on_progress: Callable[[int, int, str], None] | None,
) -> dict[tuple[str | None, str], np.ndarray]:
    """``final_recall(**loop)`` for every loop, by (family, policy name): in this process, or spread over a worker
    pool when the work pays for one (see ``evaluate``'s ``processes``); ``on_progress(done, total, name)`` after
    each."""
    total = len(loops)
    dt_loops = sum(loop["model"] is not None for loop in loops)
    reviews = loops[0]["students"] * loops[0]["interactions"] if loops else 0
    work = reviews * (dt_loops + BASELINE_SHARE * (total - dt_loops))
    workers = pool_size(processes, parts=min(total, int(work // POOL_PART_REVIEWS)))
    recall: dict[tuple[str | None, str], np.ndarray] = {}

    def finished(loop: dict[str, Any], values: np.ndarray) -> None:
        recall[(loop["family"], loop["policy_name"])] = values
        if on_progress is not None:
            on_progress(len(recall), total, loop["policy_name"])

    if workers == 1:
        for loop in loops:
            finished(loop, final_recall(**loop))
        return recall
    # the policy's loops first: they are the longest, and the baselines' fill the workers' gaps after them
    ordered = sorted(loops, key=lambda loop: loop["model"] is None)
    with worker_pool(workers, preload=[__name__]) as pool:
        pending = {pool.submit(final_recall, **loop): loop for loop in ordered}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(pending.pop(future), future.result())
        except BaseException:
            for future in pending:  # a failed loop or an interrupt: what has not started never will
                future.cancel()
            raise
    return recall


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


def family_policies(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The policies' results of a family's block (its keys but FAMILY_SUMMARY_KEYS)."""
    return {name: r for name, r in block.items() if name not in FAMILY_SUMMARY_KEYS}


def format_report(metrics: dict[str, Any]) -> str:
    """The ``families`` blocks of an evaluation as a Markdown table: per family and policy (best first) the mean
    with its 95% interval and the paired difference dt - policy with its interval, then per family the best
    behaviour policy and the share of the lowest_recall-to-oracle gap closed. "" without ``families``."""
    families = metrics.get("families") or {}
    if not families:
        return ""
    lines = ["| family | policy | mean | 95% CI | dt - policy (paired) | 95% CI |", "|---|---|---:|---|---:|---|"]
    notes = []
    for family, block in families.items():
        paired = block.get("paired") or {}
        for name, r in sorted(family_policies(block).items(), key=lambda kv: -kv[1]["mean"]):
            lo, hi = r["ci95"]
            d = paired.get(name)
            shown = ("", "") if d is None else (f"{d['mean']:+.4f}", f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]")
            marker = " (best behaviour)" if name == block.get("best_behaviour") else ""
            lines.append(f"| {family} | {name}{marker} | {r['mean']:.4f} | [{lo:.4f}, {hi:.4f}] | {shown[0]} | "
                         f"{shown[1]} |")
        gap = block.get("gap_closed")
        gap_text = ("n/a (the oracle is no ceiling here: not above lowest_recall and every other policy)" if gap is None
                    else f"{gap:.1%}")
        notes.append(f"- {family}: gap closed {gap_text}" if "dt" in block else f"- {family}: no policy")
    return "\n".join(lines + [""] + notes)
