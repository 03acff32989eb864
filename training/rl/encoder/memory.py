"""The recall estimator (one memory per learner and concept), the state it encodes and the reward (NumPy only).

Two estimators, chosen by ``EncoderConfig.estimator``; both read the review log alone. The grade a review counts
with (``effective_grade``): 1 when wrong whatever its grade; when correct the grade if it is 2-4, else 3 (an
unknown (0) or contradictory (1) grade).

FSRS-6 (estimator "fsrs6", the default)
---------------------------------------
The memory model of ``fsrs6.py`` (the ``fsrs`` package's formulas; this module calls its vectorised ``update``
and ``recall``, it does not restate them), with the curriculum's fitted parameters ``fsrs6_parameters`` (21
floats, ``fsrs_fit.fit_fsrs6`` on the time-ordered train part of the curriculum's log; None = the package's
defaults) and same-day rule (``fsrs6_same_day_stability``, or ``fsrs6_same_day_recall`` for encoders fitted
before it; with neither, the default same-day stabilities, ``fsrs6_same_day_default``, see ``config.py``).
Memory: stability S (kept here in seconds: FSRS-6's days x 86400; the interval at which recall is 0.9),
difficulty D in [1, 10], time and grade of the last review, number of reviews. Estimated recall at t is fsrs6's
retrievability: the power forgetting curve at the whole days since the last review; less than a whole day after
it, the same-day rule by the last grade (the curve at the fractional days with the fitted or default same-day
stability; or the old constant table; the package's 1.0 in configs stored before the default rule);
0 for a concept never reviewed. Updates are fsrs6's: first review, long-term
success / lapse, same-day (short-term) stability. With ``concept_recall_exponent`` (fitted across the curriculum's
learners, ``fit.fit_concept_recall_exponents``), the estimated recall of concept c is that retrievability to the
power k_c (a read-out: the memory and its updates stay FSRS-6's, with FSRS-6's own retrievability).

Why no per-concept factor by default (the half-life estimator's ``concept_stability``): FSRS-6's initial
stabilities w0-w3 (by first grade) and its difficulty D, updated by every later grade, carry part of what the factor
approximated (an easy concept gets better grades, so a longer first stability and a lower D); fsrs-rs fits all 21
jointly. What they do not carry is a difficulty shared by every learner of a concept (D is per learner and
concept): ``concept_recall_exponent``, fitted across learners when asked (``fit_encoder_config(concept_exponents=
True)``), does; it is off by default because the product's rules and behaviour mix were chosen with the plain
estimate (measured in bench/README.md, "Per-concept recall exponents").

Half-life (estimator "halflife": configs exported before FSRS-6, kept serving as they were trained)
--------------------------------------------------------------------------------------------------
memory: stability S (seconds; the estimated half-life), difficulty D in [1, 10], time of the last review,
number of reviews.

* estimated recall at time t: ``R = 2 ** (-(t - last_review) / S)``; a concept never reviewed has ``R = 0``.
* ``R`` below is the recall just before the review; ``clip`` keeps D in [1, 10].
* first review:       ``S = initial_stability_s[g - 1] * concept_stability[c]`` (1 unless fitted),
                      ``D = clip(initial_difficulty - difficulty_step * (g - 3))``
* correct, reviewed:  ``S' = S * (1 + growth * (11 - D) / 6 * (1 - R) ** recall_exponent * grade_factor[g - 1])``
* wrong, reviewed:    ``S' = max(initial_stability_s[0], S * lapse_factor)``
* then                ``D' = clip(D - difficulty_step * (g - 3))``; S is capped at ``max_stability_s``.

The state layout is in ``config.py``.

Reward (from the log alone, with the estimator above: the fitted FSRS-6 for "fsrs6")
-------------------------------------------------------------------------------------
The potential ``M_i`` is the mean over all concepts of the estimated recall at ``t_i + horizon_s`` with the
memory after review i (``M_0 = 0``: nothing reviewed). The reward of review i is ``r_i = M_i - M_{i-1}``: what
the review added to recall at the horizon, less what the other concepts lost to forgetting since the last
review. The rewards telescope, so an episode's return is ``M_last``: the estimated mean recall ``horizon_s``
after the last review, which is what evaluation measures with the simulator's true recall.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import fsrs6
from .config import FEATURES_PER_CONCEPT, NEVER_REVIEWED_ELAPSED, EncoderConfig

_HOUR = 3600.0
_ELAPSED_SCALE = float(np.log1p(24 * 30))
_REVIEWS_SCALE = float(np.log1p(100))
_STABILITY_SCALE = float(np.log1p(24 * 365))


@dataclass
class EncoderMemory:
    """What the encoder remembers of n learners: arrays [n, C] (potential [n])."""

    stability: np.ndarray  # float64, seconds
    difficulty: np.ndarray  # float64
    last_review: np.ndarray  # float64, seconds since the epoch; meaningless while reviews == 0
    reviews: np.ndarray  # int64
    potential: np.ndarray  # float64 [n]: M at the last review (see the module docstring)
    last_grade: np.ndarray  # int8, the effective grade of the last review (0 before); FSRS-6's same-day recall

    def __len__(self) -> int:
        return self.stability.shape[0]

    def take(self, rows: np.ndarray) -> "EncoderMemory":
        return EncoderMemory(*(getattr(self, f.name)[rows].copy() for f in fields(self)))

    def put(self, rows: np.ndarray, other: "EncoderMemory") -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


class StateEncoder:
    """Batch operations over many learners' memories; one learner is a batch of one."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.num_concepts = config.num_concepts
        self.state_dim = config.state_dim
        self._initial_stability = np.asarray(config.initial_stability_s, dtype=np.float64)
        self._grade_factor = np.asarray(config.grade_factor, dtype=np.float64)
        self._concept_stability = (None if config.concept_stability is None
                                   else np.asarray(config.concept_stability, dtype=np.float64))
        self._fsrs = config.estimator == "fsrs6"
        self._w = np.asarray(config.parameters, dtype=np.float64) if self._fsrs else None
        self._same_day = config.fsrs6_same_day_recall if self._fsrs else None
        self._same_day_stability = config.same_day_stability if self._fsrs else None
        self._exponent = (None if config.concept_recall_exponent is None
                          else np.asarray(config.concept_recall_exponent, dtype=np.float64))

    def init_memory(self, n: int) -> EncoderMemory:
        shape = (n, self.num_concepts)
        return EncoderMemory(
            # any positive stability keeps 2 ** (-elapsed / S) finite before the first review
            stability=np.full(shape, self._w[2] * fsrs6.DAY_S if self._fsrs else self._initial_stability[2]),
            difficulty=np.full(shape, float(self.config.initial_difficulty)),
            last_review=np.zeros(shape),
            reviews=np.zeros(shape, dtype=np.int64),
            potential=np.zeros(n),
            last_grade=np.zeros(shape, dtype=np.int8),
        )

    def recall(self, memory: EncoderMemory, t: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """Estimated recall float64 [n, C] at times t [n] (seconds since the epoch); rows selects learners of
        memory (default all)."""
        r, c, p = self._reviewed_recall(memory, np.asarray(t, dtype=np.float64), rows)
        out = np.zeros((len(memory) if rows is None else len(rows), self.num_concepts))
        out[r, c] = p
        return out

    def _reviewed_recall(self, memory: EncoderMemory, t: np.ndarray,
                         rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The recall at the reviewed cells only (a concept never reviewed has recall 0): (r, c, p), p float64 at
        cell (r, c) of the [n, C] grid, each computed by the estimator's per-cell formula as on the whole grid."""
        reviews = memory.reviews if rows is None else memory.reviews[rows]
        r, c = np.nonzero(reviews > 0)
        learner = r if rows is None else np.asarray(rows)[r]
        at = t[r]
        if self._fsrs:
            p = fsrs6.recall(_pair_memory(memory, learner, c), np.arange(r.size), np.zeros(r.size, dtype=np.int64),
                             at, w=self._w, same_day_recall=self._same_day,
                             same_day_stability=self._same_day_stability)
            if self._exponent is not None:
                p = p ** self._exponent[c]
        else:
            elapsed = np.maximum(at - memory.last_review[learner, c], 0.0)
            p = np.exp2(-elapsed / memory.stability[learner, c])
        return r, c, p

    def encode(self, memory: EncoderMemory, t: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """States float32 [n, state_dim] at times t [n]; rows selects learners of memory (default all)."""
        stability, last, reviews = _rows(memory, rows)
        t = np.asarray(t, dtype=np.float64)
        seen = reviews > 0
        elapsed_h = np.maximum(t[:, None] - last, 0.0) / _HOUR
        out = np.empty(stability.shape + (FEATURES_PER_CONCEPT,), dtype=np.float32)
        out[..., 0] = self.recall(memory, t, rows=rows)
        out[..., 1] = np.where(seen, np.log1p(elapsed_h) / _ELAPSED_SCALE, NEVER_REVIEWED_ELAPSED)
        out[..., 2] = np.log1p(reviews) / _REVIEWS_SCALE
        out[..., 3] = np.where(seen, np.log1p(stability / _HOUR) / _STABILITY_SCALE, 0.0)
        return out.reshape(stability.shape[0], self.state_dim)

    def recall_from_states(self, states: np.ndarray) -> np.ndarray:
        """The recall feature of encoded states [..., S] -> [..., C] (for heuristics on stored states)."""
        return states[..., 0::FEATURES_PER_CONCEPT]

    def update(
        self,
        memory: EncoderMemory,
        learner_rows: np.ndarray,
        concepts: np.ndarray,
        t: np.ndarray,
        correct: np.ndarray,
        grade: np.ndarray,
        *,
        rewards: bool = True,
    ) -> np.ndarray | None:
        """Apply one review per listed learner (rows distinct) in place; returns the rewards float32 [rows].

        ``rewards`` False: the memory's recall state is updated the same, but the reward (the potential: the recall at
        the horizon of every reviewed concept) is not computed, None is returned and ``memory.potential`` is left
        as it was: for a caller that never reads rewards (``simulator.generate_logs``'s behaviour policies)."""
        cfg = self.config
        rows = np.asarray(learner_rows, dtype=np.int64)
        concepts = np.asarray(concepts, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        grade = np.asarray(grade, dtype=np.int64)
        g = effective_grade(correct, grade)
        if self._fsrs:
            self._update_fsrs6(memory, rows, concepts, t, g)
        else:
            self._update_halflife(memory, rows, concepts, t, g)
        memory.last_grade[rows, concepts] = g
        if not rewards:
            return None

        # the mean over all C concepts of the recall at the horizon, summed over the reviewed ones (the others add 0)
        r, _, p = self._reviewed_recall(memory, t + cfg.horizon_s, rows)
        potential = np.bincount(r, weights=p, minlength=rows.size) / self.num_concepts
        rewards = (potential - memory.potential[rows]).astype(np.float32)
        memory.potential[rows] = potential
        return rewards

    def _update_fsrs6(self, memory: EncoderMemory, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray,
                      g: np.ndarray) -> None:
        # The reviewed (learner, concept) pairs as m one-concept learners of fsrs6 (rows are distinct).
        m = rows.size
        pairs = _pair_memory(memory, rows, concepts)
        fsrs6.update(pairs, np.arange(m), np.zeros(m, dtype=np.int64), t, g, w=self._w)
        memory.stability[rows, concepts] = pairs.stability[:, 0] * fsrs6.DAY_S
        memory.difficulty[rows, concepts] = pairs.difficulty[:, 0]
        memory.last_review[rows, concepts] = t
        memory.reviews[rows, concepts] = pairs.reviews[:, 0]

    def expected_recall_gain(self, memory: EncoderMemory, t: np.ndarray, horizon_s: float | None = None, *,
                             rows: np.ndarray | None = None) -> np.ndarray:
        """For each concept, the expected rise of the ESTIMATED recall at ``t + horizon_s`` if it were reviewed at
        ``t``: float64 [n, C] (rows selects learners of memory, default all; ``t`` float [n] seconds;
        ``horizon_s`` seconds, default the config's ``horizon_s``). One-step lookahead on the encoder's own memory
        model, the estimate of the simulator oracle's ``expected_recall_gain``::

            gain = p R_h(after a correct review) + (1 - p) R_h(after a wrong one) - R_h(no review)

        with ``p`` the estimated recall at ``t`` (0 for a concept never reviewed: its first review counts as wrong),
        a correct review graded Good (3, ``effective_grade`` of a correct review without a grade) and a wrong one
        Again (1), and ``R_h`` the estimated recall at ``t + horizon_s`` (FSRS-6 with the config's same-day rule,
        or the half-life curve). Gains may be negative (a lapse can lower a concept's recall at the horizon).
        ValueError when horizon_s is not a finite number >= 0.
        """
        horizon = float(self.config.horizon_s if horizon_s is None else horizon_s)
        if not np.isfinite(horizon) or horizon < 0:
            raise ValueError(f"horizon_s: expected a finite number of seconds >= 0, got {horizon_s!r}")
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        reviews = memory.reviews if rows is None else memory.reviews[np.asarray(rows, dtype=np.int64)]
        # A first review's gain depends on the concept alone (not on t): once per concept, for every learner.
        fresh = self.init_memory(1)
        concepts = np.arange(self.num_concepts, dtype=np.int64)
        gain = np.tile(self._cell_gain(_cells(fresh, np.zeros_like(concepts), concepts), concepts,
                                       np.zeros(self.num_concepts), horizon), (reviews.shape[0], 1))
        r, c = np.nonzero(reviews > 0)
        if r.size:
            learners = r if rows is None else np.asarray(rows, dtype=np.int64)[r]
            gain[r, c] = self._cell_gain(_cells(memory, learners, c), c, t[r], horizon)
        return gain

    def _cell_gain(self, cells: EncoderMemory, concept: np.ndarray, t: np.ndarray, horizon: float) -> np.ndarray:
        """``expected_recall_gain`` of m one-concept learners (``_cells``; concept [m] their concept positions) at
        t [m] seconds: float64 [m]."""
        m = len(cells)
        now, later = self._cell_recall(cells, t, concept), self._cell_recall(cells, t + horizon, concept)
        gain = -later
        for grade, weight in ((3, now), (1, 1.0 - now)):
            after = cells.take(np.arange(m))
            if self._fsrs:
                self._update_fsrs6(after, np.arange(m), np.zeros(m, dtype=np.int64), t, np.full(m, grade))
            else:
                self._halflife_cells(after, np.arange(m), np.zeros(m, dtype=np.int64), t, np.full(m, grade),
                                     concept_of=concept)
            after.last_grade[:, 0] = grade
            gain += weight * self._cell_recall(after, t + horizon, concept)
        return gain

    def _cell_recall(self, cells: EncoderMemory, t: np.ndarray, concept: np.ndarray) -> np.ndarray:
        """Estimated recall float64 [m] of m one-concept learners (``_cells``; concept [m] their concept positions,
        for ``concept_recall_exponent``) at t [m]; 0 where never reviewed."""
        m = len(cells)
        if self._fsrs:
            p = fsrs6.recall(_pair_memory(cells, np.arange(m), np.zeros(m, dtype=np.int64)), np.arange(m),
                             np.zeros(m, dtype=np.int64), t, w=self._w, same_day_recall=self._same_day,
                             same_day_stability=self._same_day_stability)
            return p if self._exponent is None else p ** self._exponent[concept]
        elapsed = np.maximum(t - cells.last_review[:, 0], 0.0)
        return np.where(cells.reviews[:, 0] > 0, np.exp2(-elapsed / cells.stability[:, 0]), 0.0)

    def _update_halflife(self, memory: EncoderMemory, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray,
                         g: np.ndarray) -> None:
        self._halflife_cells(memory, rows, concepts, t, g, concept_of=concepts)

    def _halflife_cells(self, memory: EncoderMemory, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray,
                        g: np.ndarray, *, concept_of: np.ndarray) -> None:
        """The half-life update of cells (rows, concepts) of memory; ``concept_of``: each cell's concept position
        (for ``concept_stability``; the cells' own column unless memory holds one-concept learners)."""
        cfg = self.config
        stability = memory.stability[rows, concepts]
        difficulty = memory.difficulty[rows, concepts]
        reviews = memory.reviews[rows, concepts]
        seen = reviews > 0
        elapsed = np.maximum(t - memory.last_review[rows, concepts], 0.0)
        recall_before = np.where(seen, np.exp2(-elapsed / stability), 0.0)

        ease = (11.0 - difficulty) / 6.0
        spacing = (1.0 - recall_before) ** cfg.recall_exponent
        grown = stability * (1.0 + cfg.growth * ease * spacing * self._grade_factor[g - 1])
        lapsed = np.maximum(self._initial_stability[0], stability * cfg.lapse_factor)
        first = self._initial_stability[g - 1]
        if self._concept_stability is not None:
            first = first * self._concept_stability[concept_of]
        new_stability = np.where(seen, np.where(g > 1, grown, lapsed), first)
        base_difficulty = np.where(seen, difficulty, cfg.initial_difficulty)

        memory.stability[rows, concepts] = np.minimum(new_stability, cfg.max_stability_s)
        memory.difficulty[rows, concepts] = np.clip(base_difficulty - cfg.difficulty_step * (g - 3), 1.0, 10.0)
        memory.last_review[rows, concepts] = t
        memory.reviews[rows, concepts] = reviews + 1


def effective_grade(correct: np.ndarray, grade: np.ndarray) -> np.ndarray:
    """The grade the estimator uses: 1 when wrong; when correct the grade if it is 2-4, else 3 (see the module)."""
    grade = np.asarray(grade, dtype=np.int64)
    return np.where(np.asarray(correct, dtype=bool), np.where((grade >= 2) & (grade <= 4), grade, 3), 1)


def _pair_memory(memory: EncoderMemory, learners: np.ndarray, concepts: np.ndarray) -> fsrs6.Memory:
    """Cells (learners[i], concepts[i]) of memory as fsrs6 reads them: i one-concept learners, arrays [m, 1]
    (stability in days); a copy."""
    return fsrs6.Memory(
        stability=(memory.stability[learners, concepts] / fsrs6.DAY_S)[:, None],
        difficulty=memory.difficulty[learners, concepts][:, None],
        last_t=memory.last_review[learners, concepts][:, None],
        last_grade=memory.last_grade[learners, concepts][:, None],
        reviews=memory.reviews[learners, concepts][:, None],
    )


def _cells(memory: EncoderMemory, learners: np.ndarray, concepts: np.ndarray) -> EncoderMemory:
    """Cells (learners[i], concepts[i]) of memory as m one-concept learners (arrays [m, 1]; a copy)."""
    def cell(array: np.ndarray) -> np.ndarray:
        return array[learners, concepts][:, None]

    return EncoderMemory(stability=cell(memory.stability), difficulty=cell(memory.difficulty),
                         last_review=cell(memory.last_review), reviews=cell(memory.reviews),
                         potential=np.zeros(len(learners)), last_grade=cell(memory.last_grade))


def _rows(memory: EncoderMemory, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if rows is None:
        return memory.stability, memory.last_review, memory.reviews
    return memory.stability[rows], memory.last_review[rows], memory.reviews[rows]
