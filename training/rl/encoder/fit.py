"""Fitting the encoder to a review log: ``ConceptStabilityFit`` (one first-memory stability factor per concept)
and the (learner, concept) sequence helper it shares with calibration (NumPy only)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import EncoderConfig
from .memory import effective_grade


def concept_sequences(learner: np.ndarray, concept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in (learner, time) order, n > 0 -> (order, starts): ``order`` sorts them by (learner, concept) and keeps
    time order within (stable), ``starts`` are the positions in that order where a (learner, concept) sequence
    begins."""
    n = len(learner)
    order = np.lexsort((np.arange(n), concept, learner))
    key_l, key_c = learner[order], concept[order]
    starts = np.flatnonzero(np.r_[True, (key_l[1:] != key_l[:-1]) | (key_c[1:] != key_c[:-1])])
    return order, starts


class ConceptStabilityFit:
    """Fits ``EncoderConfig.concept_stability`` to a review log, streamed in chunks in (learner, time) order.

    After a learner's first review of concept c with (effective) grade g, the estimator's stability is
    ``initial_stability_s[g - 1] * m_c``, so the learner's second review of c, e seconds later, is correct with
    probability ``2 ** (-e / (initial_stability_s[g - 1] * m_c))``. ``m_c`` is the maximum-likelihood factor over
    all learners' (first, second) review pairs of c with time between them, on a grid from 1/16 to 16 (2 ** 0.25
    apart; ties go to the factor closest to 1); a concept with fewer than ``min_pairs`` such pairs keeps 1. It is
    the per-item part of fitting FSRS-style weights to a log: with one population median, easy and hard concepts
    are estimated alike until their outcomes pile up.
    """

    GRID = 2.0 ** np.arange(-4.0, 4.0 + 1e-9, 0.25)

    def __init__(self, config: EncoderConfig, *, min_pairs: int = 20) -> None:
        self.config = config
        self.min_pairs = min_pairs
        self.log_likelihood = np.zeros((config.num_concepts, len(self.GRID)))
        self.pairs = np.zeros(config.num_concepts, dtype=np.int64)
        self._held: tuple[np.ndarray, ...] | None = None  # the last learner's rows of the previous chunk
        self._initial_stability = np.asarray(config.initial_stability_s, dtype=np.float64)

    def add(self, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, correct: np.ndarray,
            grade: np.ndarray) -> None:
        """One chunk of rows in (learner, time) order; a learner may continue into the next chunk."""
        columns = (np.asarray(learner, dtype=np.int64), np.asarray(concept, dtype=np.int64),
                   np.asarray(t, dtype=np.float64), np.asarray(correct, dtype=bool), np.asarray(grade, dtype=np.int64))
        if self._held is not None:
            columns = tuple(np.concatenate((held, new)) for held, new in zip(self._held, columns))
        if not len(columns[0]):
            return
        last = columns[0][-1]
        split = int(np.searchsorted(columns[0] == last, True))  # rows are grouped by learner
        self._held = tuple(c[split:] for c in columns)
        self._pairs(*(c[:split] for c in columns))

    def _pairs(self, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, correct: np.ndarray,
               grade: np.ndarray) -> None:
        n = len(learner)
        if not n:
            return
        if concept.min() < 0 or concept.max() >= self.config.num_concepts:
            raise ValueError(f"concept: expected positions in [0, {self.config.num_concepts})")
        order, starts = concept_sequences(learner, concept)
        concept, t, correct, grade = (c[order] for c in (concept, t, correct, grade))
        has_second = np.r_[np.diff(starts), n - starts[-1]] >= 2
        first = starts[has_second]
        second = first + 1
        elapsed = t[second] - t[first]
        # a pair with no time between its reviews (or a broken time) says nothing of how long memory lasts
        informative = np.isfinite(elapsed) & (elapsed > 0)
        first, second, elapsed = first[informative], second[informative], elapsed[informative]
        stability = self._initial_stability[effective_grade(correct[first], grade[first]) - 1]
        p = np.exp2(-elapsed[:, None] / (stability[:, None] * self.GRID))  # [pairs, grid]
        p = np.clip(p, 1e-6, 1.0 - 1e-6)
        ll = np.where(correct[second][:, None], np.log(p), np.log1p(-p))
        np.add.at(self.log_likelihood, concept[first], ll)
        self.pairs += np.bincount(concept[first], minlength=self.config.num_concepts)

    def factors(self) -> tuple[float, ...]:
        """The fitted factor per concept (after the last chunk)."""
        if self._held is not None:
            self._pairs(*self._held)
            self._held = None
        # ties (a flat likelihood) go to the factor closest to 1: a tiny penalty, far below any real difference
        best = self.GRID[np.argmax(self.log_likelihood - 1e-9 * np.abs(np.log2(self.GRID)), axis=1)]
        return tuple(float(v) for v in np.where(self.pairs >= self.min_pairs, best, 1.0))

    def fitted_config(self) -> EncoderConfig:
        return replace(self.config, concept_stability=self.factors())
