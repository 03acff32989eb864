"""Exploration: the distribution serving draws a concept from, per curriculum, and the propensity it logs (NumPy only).

A deciding rule (a policy version, or the fallback) gives per learner its greedy choice and a preference per
candidate concept: the log of the policy's probability, or, for the fallback, minus the estimated recall (never
reviewed concepts preferred, as the fallback does). The serving distribution pi over the K candidates is then

* ``argmax``: all mass on the greedy choice (pi = 1 there, 0 elsewhere): no exploration;
* ``softmax``: ``pi_k = exp(u_k / tau) / sum_j exp(u_j / tau)`` with u the preferences, tau the temperature
  (Sutton & Barto 2018, section 2.8/13.1, the Boltzmann/softmax rule); with a policy's log-probabilities, tau = 1
  draws from the policy's own scores;
* ``epsilon_greedy``: ``pi_k = (1 - eps) [k = greedy] + eps / K`` (Sutton & Barto 2018, section 2.2).

`draw` samples one concept per learner from pi and returns its probability under pi, which the recommendation log
stores as the propensity: exactly the serving distribution's, so off-policy estimates read it as pi_b(a | s).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

RULES = ("argmax", "softmax", "epsilon_greedy")


@dataclass(frozen=True)
class Exploration:
    """A curriculum's exploration rule: ``rule`` one of RULES; ``temperature`` (softmax, > 0) and ``epsilon``
    (epsilon-greedy, in [0, 1]). Raises ValueError naming the field out of range."""

    rule: str = "argmax"
    temperature: float = 1.0
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"exploration: expected one of {', '.join(RULES)}, got {self.rule!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"exploration_temperature: expected a number > 0, got {self.temperature!r}")
        if not (np.isfinite(self.epsilon) and 0 <= self.epsilon <= 1):
            raise ValueError(f"exploration_epsilon: expected a number in [0, 1], got {self.epsilon!r}")

    def distribution(self, *, preferences: np.ndarray, greedy: np.ndarray) -> np.ndarray:
        """The serving distribution over K candidates for each of B learners.

        preferences float [B, K] (-inf allowed: such a candidate is never drawn by softmax, as a policy's zero
        probability), greedy int [B] (indices into K, the deciding rule's choice) -> float64 [B, K], rows summing to 1.
        Raises ValueError on shapes that do not agree or a row of softmax preferences all -inf.
        """
        u = np.asarray(preferences, dtype=np.float64)
        g = np.asarray(greedy, dtype=np.int64)
        if u.ndim != 2 or g.shape != (u.shape[0],) or (g.size and (g.min() < 0 or g.max() >= u.shape[1])):
            raise ValueError(f"preferences [B, K] and greedy [B] in [0, K): got {u.shape} and {g.shape}")
        B, K = u.shape
        onehot = np.zeros((B, K))
        onehot[np.arange(B), g] = 1.0
        if self.rule == "argmax":
            return onehot
        if self.rule == "epsilon_greedy":
            return (1.0 - self.epsilon) * onehot + self.epsilon / K
        z = u / self.temperature
        top = z.max(axis=1, keepdims=True)
        if not np.isfinite(top).all():
            raise ValueError("softmax exploration: a learner has no candidate with a finite preference")
        e = np.exp(z - top)
        return e / e.sum(axis=1, keepdims=True)


_local = threading.local()


def _rng() -> np.random.Generator:
    # a Generator is not thread-safe: one per serving thread, seeded from the operating system
    rng = getattr(_local, "rng", None)
    if rng is None:
        rng = _local.rng = np.random.default_rng()
    return rng


def draw(distribution: np.ndarray, *, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One index per row of ``distribution`` float [B, K] (rows summing to 1), drawn with those probabilities
    (inverse CDF of one uniform per row) -> (chosen int64 [B], propensity float64 [B] = distribution[b, chosen_b],
    always > 0)."""
    p = np.asarray(distribution, dtype=np.float64)
    u = (rng or _rng()).random(p.shape[0])
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = np.inf  # rounding never pushes a draw past the last index
    chosen = (cdf <= u[:, None]).sum(axis=1)
    # rounding of the cumulative sum can land a draw just past the last positive index: take the nearest one before
    for b in np.flatnonzero(p[np.arange(p.shape[0]), chosen] <= 0):
        positive = np.flatnonzero(p[b] > 0)
        before = positive[positive <= chosen[b]]
        chosen[b] = before[-1] if before.size else positive[0]
    return chosen.astype(np.int64), p[np.arange(p.shape[0]), chosen]
