"""FSRS-6 memory model in NumPy, vectorised over learners x concepts (no Django, no torch).

Formulas: FSRS-6 as implemented by the ``fsrs`` Python package 6.3 (open-spaced-repetition/py-fsrs,
``fsrs/scheduler.py``; the same as fsrs-rs). Parameters ``w`` (21 floats, see DEFAULT_PARAMETERS); grades
G in 1..4 (Again, Hard, Good, Easy); stability S and elapsed time in days; difficulty D in [1, 10].

* forgetting curve: ``R(t, S) = (1 + FACTOR * t / S) ** -w20`` with ``FACTOR = 0.9 ** (-1 / w20) - 1`` (R = 0.9 at t = S);
* first review: ``S = w[G-1]`` (at least 0.001), ``D = clip(w4 - exp(w5 (G - 1)) + 1, 1, 10)``;
* difficulty after any later review: ``D' = clip(w7 D0(4) + (1 - w7)(D + (10 - D)(-w6 (G - 3)) / 9), 1, 10)``;
* a review at least one whole day after the previous one (long-term), with R the retrievability then:
  success ``S' = S (1 + e^w8 (11 - D) S^-w9 (e^(w10 (1 - R)) - 1) [w15 if Hard] [w16 if Easy])``,
  lapse ``S' = min(w11 D^-w12 ((S + 1)^w13 - 1) e^(w14 (1 - R)), S / e^(w17 w18))``;
* a review less than a whole day after the previous one (same-day, short-term):
  ``S' = S e^(w17 (G - 3 + w18)) S^-w19``, the growth factor at least 1 when G >= 2.

Elapsed time, as the package: whole days, ``floor((t - t_last) / 86400)``; a learner's first review of a concept
has no retrievability (0, as the package's card without a review).

Same-day recall (where this module differs from the package, by choice): the package's retrievability less than
a whole day after a review is R(0) = 1, a certainty that real same-day reviews (learning steps after a lapse)
contradict. Two same-day rules, indexed by the grade G' of the previous review; with neither it is the package's
(1.0). Memory updates are the package's whatever the rule; a review a day or more after the previous one reads
the package's curve at whole days either way.

* ``same_day_stability`` (4 floats, days; the rule fits produce): the same power curve on the elapsed time in
  fractional days, with a same-day stability fitted per previous grade,
  ``R = (1 + FACTOR * dt / s[G' - 1]) ** -w20`` with ``dt = (t - t_last) / 86400`` (< 1). Recall falls over the
  hours after a review (srs-benchmark's ``--secs`` mode likewise reads the curve on fractional days; here the
  stability is the fitted same-day one: the card's long-term S says little about learning steps). The rule
  is for dt < 1 only; from one whole day on, the package's curve at whole days on the card's S takes over, so
  recall may step at dt = 1 where s differs from S (the package's own curve steps at every whole day).
  Fitted by ``fsrs_fit.fit_same_day_stability``. Measured (``bench/same_day_rule.py``): on the synthetic
  students, whose recall falls over hours, the test part's same-day log loss is 0.186 / 0.164 against the
  table's 0.228 / 0.204 (AUC 0.87-0.88 against 0.72-0.74; training seeds 3 / 7), and the behaviour policies that
  choose by the estimate gain 0.025-0.036 final recall; on the real Anki log (``bench/calibration.py``), whose
  same-day reviews are learning steps minutes apart, the table did better (same-day included 0.4567 against
  0.4755; both below the constant's 0.5170).
* ``same_day_recall`` (4 probabilities; encoders fitted before the rule above keep it): a constant per previous
  grade, ``R = same_day_recall[G' - 1]``, whatever the hours since the review.

Default same-day stabilities (``default_same_day_stability``: an encoder with no fitted same-day rule, e.g. the
unfitted one that serves while no policy version is active). Stability is, by FSRS's definition, the interval at
which recall is 0.9, the package's default ``desired_retention``. After Again, the package's ``Scheduler`` (fsrs
6.3, ``Scheduler.review_card``, State.Learning, Rating.Again) shows the card again after ``learning_steps[0]``
= 1 minute: it takes a failed card to be due again (R at the desired retention 0.9) after a minute, so
``s[Again] = 60 s = 1/1440 day`` (recall 5 minutes after a lapse: ``(1 + FACTOR * 5) ** -w20`` = 0.7605 with the
default parameters). After a correct grade G' in 2..4, the stability FSRS-6 gives a card's first review with that
grade, ``s[G' - 1] = w[G' - 1]`` (days: 1.2931, 2.3065, 8.2956 by default). Chosen on validation seeds
(``bench/same_day_rule.py``, held-out seed 99) among the package's other short-term intervals.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86400.0
NUM_PARAMETERS = 21
DEFAULT_PARAMETERS: tuple[float, ...] = (
    0.212, 1.2931, 2.3065, 8.2956, 6.4133, 0.8334, 3.0194, 0.001, 1.8722, 0.1666, 0.796,
    1.4835, 0.0614, 0.2629, 1.6483, 0.6014, 1.8729, 0.5425, 0.0912, 0.0658, 0.1542,
)
STABILITY_MIN = 0.001
# The range a fitted same-day stability may take (days): ~9 s to 100 days.
SAME_DAY_STABILITY_MIN, SAME_DAY_STABILITY_MAX = 1e-4, 100.0
DIFFICULTY_MIN, DIFFICULTY_MAX = 1.0, 10.0
# The package's bounds on each parameter (fsrs.scheduler.LOWER/UPPER_BOUNDS_PARAMETERS).
LOWER_BOUNDS: tuple[float, ...] = (
    STABILITY_MIN, STABILITY_MIN, STABILITY_MIN, STABILITY_MIN, 1.0, 0.001, 0.001, 0.001, 0.0, 0.0, 0.001,
    0.001, 0.001, 0.001, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.1,
)
UPPER_BOUNDS: tuple[float, ...] = (
    100.0, 100.0, 100.0, 100.0, 10.0, 4.0, 4.0, 0.75, 4.5, 0.8, 3.5, 5.0, 0.25, 0.9, 4.0, 1.0, 6.0, 2.0, 2.0, 0.8, 0.8,
)


# The package Scheduler's first learning step (fsrs 6.3 ``Scheduler(learning_steps=(1 min, 10 min))``): when it
# shows a card answered Again again.
LEARNING_STEP_S = 60.0


def default_same_day_stability(w=DEFAULT_PARAMETERS) -> tuple[float, float, float, float]:
    """The default same-day stabilities (days, by the previous grade 1-4; see the module docstring): the package
    Scheduler's first learning step after Again (``LEARNING_STEP_S`` / 86400), FSRS-6's first-review stabilities
    ``w[1], w[2], w[3]`` after Hard, Good, Easy. ``w``: 21 parameters (ValueError as ``check_parameters``). Each
    value is clipped into [SAME_DAY_STABILITY_MIN, SAME_DAY_STABILITY_MAX] so ``check_same_day_stability`` accepts it.
    """
    w = check_parameters(w)
    values = (LEARNING_STEP_S / DAY_S, w[1], w[2], w[3])
    return tuple(float(np.clip(v, SAME_DAY_STABILITY_MIN, SAME_DAY_STABILITY_MAX)) for v in values)


def check_parameters(w) -> np.ndarray:
    """``w`` as float64 [21]; ValueError naming the parameter when one is missing or out of the package's bounds."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if w.size != NUM_PARAMETERS:
        raise ValueError(f"parameters: expected {NUM_PARAMETERS} numbers, got {w.size}")
    bad = [i for i in range(NUM_PARAMETERS) if not LOWER_BOUNDS[i] <= w[i] <= UPPER_BOUNDS[i]]
    if bad:
        i = bad[0]
        raise ValueError(f"parameters[{i}] = {w[i]} is out of bounds [{LOWER_BOUNDS[i]}, {UPPER_BOUNDS[i]}]")
    return w


def check_same_day_recall(same_day_recall) -> np.ndarray | None:
    """None, or float64 [4] of probabilities in (0, 1); ValueError naming the field otherwise."""
    if same_day_recall is None:
        return None
    values = np.asarray(same_day_recall, dtype=np.float64).reshape(-1)
    if values.size != 4 or not np.all((values > 0) & (values < 1)):
        raise ValueError(f"same_day_recall: expected 4 probabilities in (0, 1), got {list(values)}")
    return values


def check_same_day_stability(same_day_stability) -> np.ndarray | None:
    """None, or float64 [4] of same-day stabilities (days) in [SAME_DAY_STABILITY_MIN, SAME_DAY_STABILITY_MAX];
    ValueError naming the field otherwise."""
    if same_day_stability is None:
        return None
    values = np.asarray(same_day_stability, dtype=np.float64).reshape(-1)
    if values.size != 4 or not np.all((values >= SAME_DAY_STABILITY_MIN) & (values <= SAME_DAY_STABILITY_MAX)):
        raise ValueError(f"same_day_stability: expected 4 stabilities in [{SAME_DAY_STABILITY_MIN}, "
                         f"{SAME_DAY_STABILITY_MAX}] days, got {list(values)}")
    return values


@dataclass
class Memory:
    """The memory of L learners over C concepts, arrays [L, C].

    stability: float64, days (NaN before the first review); difficulty: float64 in [1, 10] (NaN before);
    last_t: float64, seconds since the epoch of the latest review (NaN before); last_grade: int8 1-4 (0 before);
    reviews: int64, number of reviews so far.
    """

    stability: np.ndarray
    difficulty: np.ndarray
    last_t: np.ndarray
    last_grade: np.ndarray
    reviews: np.ndarray


def init_memory(num_learners: int, num_concepts: int) -> Memory:
    """An empty memory (no reviews) for ``num_learners`` x ``num_concepts``."""
    shape = (int(num_learners), int(num_concepts))
    return Memory(
        stability=np.full(shape, np.nan), difficulty=np.full(shape, np.nan), last_t=np.full(shape, np.nan),
        last_grade=np.zeros(shape, dtype=np.int8), reviews=np.zeros(shape, dtype=np.int64),
    )


def forgetting_curve(elapsed_days, stability, w) -> np.ndarray:
    """FSRS-6 power forgetting curve ``(1 + FACTOR t / S) ** -w20``: float64, broadcast over the inputs (days)."""
    decay = -float(w[20])
    factor = 0.9 ** (1.0 / decay) - 1.0
    return (1.0 + factor * np.asarray(elapsed_days, dtype=np.float64) / np.asarray(stability, dtype=np.float64)) ** decay


def _whole_days(t, last_t) -> np.ndarray:
    return np.maximum(np.floor((np.asarray(t, dtype=np.float64) - last_t) / DAY_S), 0.0)


def recall(memory: Memory, learners, concepts, t, *, w=DEFAULT_PARAMETERS, same_day_recall=None,
           same_day_stability=None) -> np.ndarray:
    """Retrievability of concept ``concepts[i]`` for learner ``learners[i]`` at ``t[i]`` (seconds): float64 [N].

    0 for a concept never reviewed; the module's same-day rule less than a whole day after the latest review
    (``same_day_stability`` or ``same_day_recall``; ValueError when both are given).
    """
    if same_day_recall is not None and same_day_stability is not None:
        raise ValueError("same_day_recall and same_day_stability: give one same-day rule, not both")
    learners = np.asarray(learners, dtype=np.int64)
    concepts = np.asarray(concepts, dtype=np.int64)
    stability = memory.stability[learners, concepts]
    last_t = memory.last_t[learners, concepts]
    seen = memory.reviews[learners, concepts] > 0
    days = _whole_days(t, np.where(seen, last_t, 0.0))
    p = np.where(seen, forgetting_curve(days, np.where(seen, stability, 1.0), w), 0.0)
    previous = np.clip(memory.last_grade[learners, concepts], 1, 4) - 1
    same_day = seen & (days < 1)
    table = check_same_day_recall(same_day_recall)
    if table is not None:
        p = np.where(same_day, table[previous], p)
    short = check_same_day_stability(same_day_stability)
    if short is not None:
        fraction = np.clip((np.asarray(t, dtype=np.float64) - np.where(seen, last_t, 0.0)) / DAY_S, 0.0, 1.0)
        p = np.where(same_day, forgetting_curve(fraction, short[previous], w), p)
    return p


def recall_grid(memory: Memory, t, *, w=DEFAULT_PARAMETERS, same_day_recall=None,
                same_day_stability=None) -> np.ndarray:
    """Retrievability of every concept for every learner at the learner's time ``t`` (float64 [L], seconds): [L, C]."""
    num_learners, num_concepts = memory.stability.shape
    learners = np.repeat(np.arange(num_learners), num_concepts)
    concepts = np.tile(np.arange(num_concepts), num_learners)
    times = np.repeat(np.asarray(t, dtype=np.float64).reshape(-1), num_concepts)
    return recall(memory, learners, concepts, times, w=w, same_day_recall=same_day_recall,
                  same_day_stability=same_day_stability).reshape(num_learners, num_concepts)


def _initial_difficulty(grade, w) -> np.ndarray:
    return w[4] - np.exp(w[5] * (grade - 1.0)) + 1.0


def update(memory: Memory, learners, concepts, t, grades, *, w=DEFAULT_PARAMETERS) -> None:
    """Apply one review per (learner, concept) pair in place, at times ``t`` (seconds) with grades 1-4.

    learners, concepts: int [N] (each pair at most once per call; a learner's reviews of one concept go in time
    order over successive calls); t: float [N]; grades: int [N] in 1..4. ValueError on a repeated pair or a grade
    outside 1..4.
    """
    w = np.asarray(w, dtype=np.float64)
    learners = np.asarray(learners, dtype=np.int64)
    concepts = np.asarray(concepts, dtype=np.int64)
    t = np.asarray(t, dtype=np.float64)
    g = np.asarray(grades, dtype=np.int64)
    if g.size and (g.min() < 1 or g.max() > 4):
        raise ValueError(f"grade: expected 1-4, got {sorted(set(g[(g < 1) | (g > 4)].tolist()))}")
    flat = learners * memory.stability.shape[1] + concepts
    if np.unique(flat).size != flat.size:
        raise ValueError("update: a (learner, concept) pair appears twice in one batch; apply its reviews one call each")
    g_f = g.astype(np.float64)
    s = memory.stability[learners, concepts]
    d = memory.difficulty[learners, concepts]
    first = memory.reviews[learners, concepts] == 0

    days = _whole_days(t, np.where(first, t, memory.last_t[learners, concepts]))
    s_safe = np.where(first, 1.0, s)
    d_safe = np.where(first, 5.0, d)
    r = forgetting_curve(days, s_safe, w)
    # long-term (>= 1 whole day): success and lapse
    success = s_safe * (1.0 + np.exp(w[8]) * (11.0 - d_safe) * s_safe ** -w[9] * np.expm1(w[10] * (1.0 - r))
                        * np.where(g == 2, w[15], 1.0) * np.where(g == 4, w[16], 1.0))
    lapse = np.minimum(w[11] * d_safe ** -w[12] * ((s_safe + 1.0) ** w[13] - 1.0) * np.exp(w[14] * (1.0 - r)),
                       s_safe / np.exp(w[17] * w[18]))
    long_term = np.where(g == 1, lapse, success)
    # short-term (same day)
    growth = np.exp(w[17] * (g_f - 3.0 + w[18])) * s_safe ** -w[19]
    growth = np.where(g >= 2, np.maximum(growth, 1.0), growth)
    short_term = s_safe * growth
    new_s = np.where(first, w[np.clip(g, 1, 4) - 1], np.where(days < 1, short_term, long_term))

    easy_d0 = _initial_difficulty(4.0, w)
    damped = d_safe + (10.0 - d_safe) * (-w[6] * (g_f - 3.0)) / 9.0
    new_d = np.where(first, _initial_difficulty(g_f, w), w[7] * easy_d0 + (1.0 - w[7]) * damped)

    memory.stability[learners, concepts] = np.maximum(new_s, STABILITY_MIN)
    memory.difficulty[learners, concepts] = np.clip(new_d, DIFFICULTY_MIN, DIFFICULTY_MAX)
    memory.last_t[learners, concepts] = t
    memory.last_grade[learners, concepts] = g
    memory.reviews[learners, concepts] += 1


def card_sequences(learner, concept) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group reviews (any order within a pair kept) by (learner, concept): ``(order, starts, card)``.

    order: int64 [N], a stable permutation putting each pair's reviews together; starts: int64 [K], where each of the
    K pairs begins in ``order``; card: int64 [N], each review's pair index 0..K-1 (in the input order).
    """
    learner = np.asarray(learner, dtype=np.int64)
    concept = np.asarray(concept, dtype=np.int64)
    if not learner.size:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    order = np.lexsort((concept, learner))  # stable: keeps the input (time) order within a pair
    key_l, key_c = learner[order], concept[order]
    new = np.r_[True, (np.diff(key_l) != 0) | (np.diff(key_c) != 0)]
    starts = np.flatnonzero(new)
    card = np.empty(learner.size, dtype=np.int64)
    card[order] = np.cumsum(new) - 1
    return order, starts, card


def replay(learner, concept, t, grade, *, w=DEFAULT_PARAMETERS, same_day_recall=None,
           same_day_stability=None) -> dict[str, np.ndarray]:
    """Each review's prediction from the same pair's earlier reviews, for reviews in time order within each pair.

    learner, concept: int [N]; t: float [N] seconds; grade: int [N] 1-4. Returns float64/bool arrays [N]:
    ``p`` (recall just before the review; 0 on a first review), ``first`` (the pair's first review), ``elapsed_days``
    (seconds since the pair's previous review / 86400; NaN on a first review). Each pair runs as its own
    one-concept learner, O(1) per review.
    """
    w = check_parameters(w)
    n = np.asarray(learner).size
    p = np.zeros(n)
    first = np.zeros(n, dtype=bool)
    elapsed = np.full(n, np.nan)
    if not n:
        return {"p": p, "first": first, "elapsed_days": elapsed}
    order, starts, _ = card_sequences(learner, concept)
    lengths = np.diff(np.r_[starts, n])
    t_sorted = np.asarray(t, dtype=np.float64)[order]
    g_sorted = np.asarray(grade, dtype=np.int64)[order]
    memory = init_memory(starts.size, 1)
    zeros = np.zeros(starts.size, dtype=np.int64)
    by_length = np.argsort(-lengths, kind="stable")  # the pairs still running at step k are a prefix
    for k in range(int(lengths.max())):
        rows = by_length[: np.searchsorted(-lengths[by_length], -k, side="left")]
        at = starts[rows] + k
        idx = order[at]
        p[idx] = recall(memory, rows, zeros[: rows.size], t_sorted[at], w=w, same_day_recall=same_day_recall,
                        same_day_stability=same_day_stability)
        first[idx] = memory.reviews[rows, 0] == 0
        elapsed[idx] = (t_sorted[at] - memory.last_t[rows, 0]) / DAY_S
        update(memory, rows, zeros[: rows.size], t_sorted[at], g_sorted[at], w=w)
    return {"p": p, "first": first, "elapsed_days": elapsed}
