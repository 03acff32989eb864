"""Fitting the encoder to a review log: ``fit_encoder_config`` (FSRS-6's parameters and same-day table, fitted by
``fsrs_fit.fit_fsrs6`` to the log's time-ordered train part; on request each concept's recall exponent,
``fit_concept_recall_exponents``), the replay of the encoder's recall before each review that the exponents' fit and
the calibration report read (``recall_before_reviews``) and its (learner, concept) sequence helper (NumPy only).

The half-life estimator's per-concept factors (``ConceptStabilityFit``, before FSRS-6) are no longer fitted: FSRS-6's
initial stabilities by first grade and its per-card difficulty subsume them (see ``memory.py``). Configs that carry
factors keep serving with them.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import EncoderConfig
from .fsrs_fit import Fsrs6Fit, fit_fsrs6
from .memory import StateEncoder, effective_grade

TRAIN_FRACTION = 0.7  # as the calibration report (srs-benchmark): the earlier 70% of the log by time
# The per-concept recall exponents (fit_concept_recall_exponents): a Gaussian prior on log k with this standard
# deviation (a concept's memories lasting e times longer or shorter than the population's is one sd; chosen a
# priori, not fitted to any log), maximised over a grid of log k within the half-width, coarse then fine.
CONCEPT_EXPONENT_PRIOR_SD = 1.0
CONCEPT_EXPONENT_GRID_HALF_WIDTH = 3.0
CONCEPT_EXPONENT_GRID_STEPS = (0.1, 0.01)


def concept_sequences(learner: np.ndarray, concept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in (learner, time) order, n > 0 -> (order, starts): ``order`` sorts them by (learner, concept) and keeps
    time order within (stable), ``starts`` are the positions in that order where a (learner, concept) sequence
    begins."""
    n = len(learner)
    order = np.lexsort((np.arange(n), concept, learner))
    key_l, key_c = learner[order], concept[order]
    starts = np.flatnonzero(np.r_[True, (key_l[1:] != key_l[:-1]) | (key_c[1:] != key_c[:-1])])
    return order, starts


def time_split(t: np.ndarray, *, train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, float | None]:
    """The time-ordered split of a log, as srs-benchmark splits: t float [N] seconds -> (train indices int64 in time
    order, the test part's first time in seconds or None when there is no test part).

    The cut is the time of the review at position ``int(N * train_fraction)`` in time order; the train part is every
    review strictly before it, so reviews tied at the cut all fall on the test side (never split by storage order).
    It can be empty (every review at one time). ``train_fraction`` 1: everything, no test part. The encoder's fit
    and the calibration report both split with this. ValueError when train_fraction is not in (0, 1].
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction: expected a number in (0, 1], got {train_fraction!r}")
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    by_time = np.argsort(t, kind="stable")
    k = int(t.size * train_fraction)
    if k >= t.size:
        return by_time, None
    cut = float(t[by_time[k]])
    return by_time[: int(np.searchsorted(t[by_time], cut, side="left"))], cut


def train_part(t: np.ndarray, *, train_fraction: float = TRAIN_FRACTION) -> np.ndarray:
    """Indices (int64) of the train part of ``time_split`` (reviews strictly before the cut; possibly none)."""
    return time_split(t, train_fraction=train_fraction)[0]


def recall_before_reviews(
    *, config: EncoderConfig, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, correct: np.ndarray, grade: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For reviews in (learner, time) order: the encoder's recall of the reviewed concept just before each review
    (float64 [N]), and whether it is the learner's first review of that concept (bool [N]; the estimate is 0).

    The encoder's memory of one concept changes only with reviews of that concept, so each (learner, concept)
    sequence runs as its own one-concept learner: O(1) per review, whatever the number of concepts. The
    encoder's rewards (which average over all concepts) are not needed here.
    """
    learner = np.asarray(learner, dtype=np.int64)
    concept = np.asarray(concept, dtype=np.int64)
    n = learner.size
    p = np.zeros(n)
    first = np.zeros(n, dtype=bool)
    if not n:
        return p, first
    order, starts = concept_sequences(learner, concept)  # within a sequence the reviews keep their time order
    lengths = np.diff(np.r_[starts, n])
    t_sorted = np.asarray(t, dtype=np.float64)[order]
    correct_sorted = np.asarray(correct, dtype=bool)[order]
    grade_sorted = np.asarray(grade, dtype=np.int64)[order]

    # One concept per sequence: the concept's fitted factor (EncoderConfig.concept_stability) is applied to each
    # sequence's first review here, as the full encoder applies it to that concept's.
    encoder = StateEncoder(replace(config, num_concepts=1, concept_stability=None, concept_recall_exponent=None))
    factors = None
    if config.concept_stability is not None:  # a position beyond the fitted ones is unfitted (factor 1)
        positions = concept[order[starts]]
        covering = config.with_num_concepts(int(positions.max()) + 1)
        factors = np.asarray(covering.concept_stability, dtype=np.float64)[positions]
    memory = encoder.init_memory(starts.size)
    zeros = np.zeros(starts.size, dtype=np.int64)
    by_length = np.argsort(-lengths, kind="stable")  # the sequences still running at step k are a prefix
    for k in range(int(lengths.max())):
        rows = by_length[: np.searchsorted(-lengths[by_length], -k, side="left")]
        at = starts[rows] + k
        p[order[at]] = encoder.recall(memory, t_sorted[at], rows=rows)[:, 0]
        is_first = memory.reviews[rows, 0] == 0
        first[order[at]] = is_first
        encoder.update(memory, rows, zeros[: rows.size], t_sorted[at], correct_sorted[at], grade_sorted[at])
        if factors is not None and is_first.any():
            scaled = rows[is_first]
            memory.stability[scaled, 0] = np.minimum(memory.stability[scaled, 0] * factors[scaled],
                                                     config.max_stability_s)
    if config.concept_recall_exponent is not None:  # each concept's exponent, as the full encoder applies it
        exponents = np.asarray(config.with_num_concepts(int(concept.max()) + 1).concept_recall_exponent)
        p = p ** exponents[concept]
    return p, first


def fit_concept_recall_exponents(*, p, correct, concept, num_concepts: int,
                                 prior_sd: float = CONCEPT_EXPONENT_PRIOR_SD) -> tuple[float, ...]:
    """Per concept, the exponent k_c on the encoder's recall (``EncoderConfig.concept_recall_exponent``) that best
    predicts the answers: the maximum a posteriori of log k_c under the Bernoulli likelihood of each review's
    answer with probability ``p ** k_c`` and a Gaussian prior N(0, prior_sd^2) on log k_c, over a grid of log k
    within +-CONCEPT_EXPONENT_GRID_HALF_WIDTH: steps of 0.1, then steps of 0.01 around each concept's best.

    p: float [N], the encoder's recall of the reviewed concept just before each review (without exponents;
    ``recall_before_reviews``), reviews that are not a concept's first for their learner only;
    correct: bool [N]; concept: int [N] positions in [0, num_concepts). A concept without reviews gets 1 (the
    prior's mode). The per-item difficulty of item-response models pooled across learners (FSRS-6's per-card
    difficulty D is per learner and concept and starts from the first grade); the power form is exact for an
    exponential forgetting curve's half-life (R = 2 ** (-t / h): R ** k = 2 ** (-t k / h)).
    Reviews at p = 0 or 1 are left out (p ** k is the same for every k). Returns num_concepts floats > 0.
    ValueError for unequal lengths, a non-finite p, a concept out of range or prior_sd <= 0.
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    y = np.asarray(correct, dtype=bool).reshape(-1)
    c = np.asarray(concept, dtype=np.int64).reshape(-1)
    if not (p.size == y.size == c.size):
        raise ValueError(f"p, correct, concept: expected equal lengths, got {p.size}, {y.size}, {c.size}")
    if not np.isfinite(p).all():
        raise ValueError("p: expected finite recall estimates")
    # a recall of 0 or 1 is the same to every power: it says nothing of k (and clipped it would pull k)
    informative = (p > 0.0) & (p < 1.0)
    p, y, c = p[informative], y[informative], c[informative]
    if c.size and (c.min() < 0 or c.max() >= num_concepts):
        raise ValueError(f"concept: positions must be in [0, {num_concepts}), got {c.min()}..{c.max()}")
    if not prior_sd > 0:
        raise ValueError(f"prior_sd: expected a number > 0, got {prior_sd!r}")
    log_p = np.log(p)
    half = CONCEPT_EXPONENT_GRID_HALF_WIDTH
    best_u = np.zeros(num_concepts)
    coarse, fine = CONCEPT_EXPONENT_GRID_STEPS

    def steps(width: float, step: float) -> np.ndarray:  # integer multiples, so that 0 is exactly on the grid
        n = int(round(width / step))
        return np.arange(-n, n + 1) * step

    for centre, offsets in ((np.zeros(num_concepts), steps(half, coarse)), (None, steps(coarse, fine))):
        centre = best_u.copy() if centre is None else centre
        best = np.full(num_concepts, -np.inf)
        for offset in offsets:  # one pass over the reviews per grid value: O(N) memory
            u = np.clip(centre + offset, -half, half)  # [C]
            q = np.clip(np.exp(log_p * np.exp(u[c])), 1e-12, 1.0 - 1e-12)
            loglik = np.bincount(c, weights=np.where(y, np.log(q), np.log1p(-q)), minlength=num_concepts)
            posterior = loglik - 0.5 * (u / prior_sd) ** 2
            better = posterior > best
            best[better], best_u[better] = posterior[better], u[better]
    return tuple(float(v) for v in np.exp(best_u))


def fit_encoder_config(
    *, learner, concept, t, correct, grade, num_concepts: int, train_fraction: float = TRAIN_FRACTION,
    horizon_s: float | None = None, concept_exponents: bool = False,
) -> tuple[EncoderConfig, Fsrs6Fit]:
    """The FSRS-6 encoder fitted to a log's time-ordered train part: arrays [N] (learner, concept int; t float
    seconds; correct bool; grade int 0-4, 0 = none recorded), any order -> (EncoderConfig, the fit).

    The fit sees each review's ``effective_grade`` (the grade the encoder counts). ``concept_exponents`` (default
    False): then each concept's recall exponent (``fit_concept_recall_exponents``) on the same train part, from the
    fitted FSRS-6's recall before each review that is not the learner's first of the concept. Off by default: on
    the built-in students it makes the recall estimate follow each concept's difficulty (fitted exponents
    correlate 0.99 with it) and lifts the target rule at targets 0.35-0.45 by 0.011-0.025, but lowers
    lowest_recall (serving's default fallback) by 0.027 and the Decision Transformer trained on the default
    behaviour mix by 0.002-0.017 (bench/README.md, "Per-concept recall exponents"); and fitted to a synthetic
    cohort they carry the simulator's concept difficulties, which a real curriculum's concepts do not share: they
    belong to a fit on a curriculum's own log with many learners per concept. Fewer long-term reviews than the
    fit needs in the train part (or none at all): the parameters stay the defaults (``fsrs6_parameters`` None; the fit's ``reason`` says why) and the
    same-day table is still the log's. ValueError when the arrays differ in length or the log is empty, and with
    ``concept_exponents`` for a concept position outside [0, num_concepts).
    """
    arrays = [np.asarray(a).reshape(-1) for a in (learner, concept, t, correct, grade)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"learner, concept, t, correct, grade: expected equal lengths, got {[a.size for a in arrays]}")
    if not arrays[0].size:
        raise ValueError("the log is empty: the encoder needs reviews to be fitted to")
    learner, concept, t, correct, grade = arrays
    part = train_part(t, train_fraction=train_fraction)
    g = effective_grade(correct[part], grade[part])
    fit = fit_fsrs6(learner=learner[part], concept=concept[part], t=t[part], grade=g, correct=correct[part])
    extra = {} if horizon_s is None else {"horizon_s": float(horizon_s)}
    config = EncoderConfig(num_concepts=num_concepts, estimator="fsrs6",
                           fsrs6_parameters=fit.parameters if fit.fitted else None,
                           fsrs6_same_day_stability=fit.same_day_stability, **extra)
    if concept_exponents and part.size:
        # the train part in time order, so each (learner, concept) sequence is in time order
        p, first = recall_before_reviews(config=config, learner=learner[part], concept=concept[part], t=t[part],
                                         correct=correct[part], grade=grade[part])
        exponents = fit_concept_recall_exponents(p=p[~first], correct=correct[part][~first],
                                                 concept=concept[part][~first], num_concepts=num_concepts)
        config = replace(config, concept_recall_exponent=exponents)
    return config, fit
