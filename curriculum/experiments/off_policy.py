"""Off-policy evaluation: a target policy's value estimated from episodes logged under another policy (NumPy only).

No Django here: the module reads arrays and can be imported, tested and benchmarked on its own.

The log
-------
An **episode** is one learner's sequence of decisions (recommendations) in time order; learner i made T_i <= T of
them. Every per-decision array is float [n, T] (n learners, padded to the longest episode; ``mask`` bool [n, T]
says which entries are decisions, each row a prefix: True then False) or float [n] for one decision per learner
(a contextual bandit, the shape of ``obp``'s feedback). ``episodes_from_rows`` packs time-ordered rows of many
learners into that layout.

* ``propensity`` pi_b(a_t | s_t): the probability with which the logging (behaviour) policy chose the logged action,
  in (0, 1].
* ``target_probability`` pi_e(a_t | s_t): the probability that the target policy (the one evaluated) chooses the
  same logged action in the same state, in [0, 1].
* ``reward`` r_t: any finite float (the encoder's per-review reward; the return of an episode is their sum).
* for doubly robust only, the direct method's estimates: ``q_hat`` q(s_t, a_t) for the logged action and
  ``v_hat`` v(s_t) = sum_a pi_e(a | s_t) q(s_t, a), the model's value of the state under the target policy.

With rho_t = pi_e(a_t | s_t) / pi_b(a_t | s_t) and the cumulative weight w_t = rho_0 ... rho_t (w_{-1} = 1), the
estimators are, per learner i (undiscounted, gamma = 1; the sum over t runs over the learner's decisions):

* **IPS**, inverse propensity scoring, trajectory-wise importance sampling (Precup, Sutton & Singh 2000, eq. for
  the "importance sampling" estimator; Horvitz & Thompson 1952 for one step, obp's ``InverseProbabilityWeighting``):
  ``V_i = w_{T_i - 1} * sum_t r_t``, the estimate ``mean_i V_i``.
* **SNIPS**, its self-normalised form (weighted importance sampling, Precup et al. 2000; Swaminathan & Joachims
  2015 for one step, obp's ``SelfNormalizedInverseProbabilityWeighting``):
  ``sum_i w_{T_i - 1} G_i / sum_i w_{T_i - 1}``, G_i the learner's return. Biased but bounded by the rewards seen.
* **PDIS**, per-decision importance sampling (Precup, Sutton & Singh 2000, eq. 3): a reward is weighted only by the
  decisions before it and its own, ``V_i = sum_t w_t r_t``.
* **DR**, sequential doubly robust (Jiang & Li 2016, eq. 9 with gamma = 1, the recursion
  ``V^(t) = v_t + rho_t (r_t + V^(t+1) - q_t)`` unrolled): ``V_i = sum_t (w_{t-1} v_t + w_t (r_t - q_t))``. For
  one-step episodes it is Dudik, Langford & Li 2011's ``v + rho (r - q)`` (obp's ``DoublyRobust``). Unbiased
  whatever q_hat is when the propensities are right (v_hat must be pi_e's average of q_hat in the same state);
  the closer q_hat is to the target's Q-function, the smaller its variance (zero with the exact Q on a
  deterministic log whose learners all start in the same state).

Each returns an ``Estimate``: the value, a 95% interval by the percentile bootstrap over learners (learners are the
independent units; their decisions are not: Efron & Tibshirani 1993, ch. 13), seeded (None below 2 learners: one
learner's resamples are all that learner, a zero-width interval that would claim certainty), and the effective
sample size (Kish 1965: ``(sum w)^2 / sum w^2``) of the weights the estimator applies: the episode weights w_{T_i - 1} for IPS
and SNIPS; for PDIS and DR, whose weights change along the episode, the mean over decision steps t of the Kish ESS
of the learners' cumulative weights w_t at that step (the same number for one-step episodes). An ESS far below n
says a few learners carry the estimate: its interval is then wider than it looks, and it may miss.

Errors: ValueError naming the field for a propensity <= 0 or > 1, a target probability outside [0, 1], a NaN or an
infinity anywhere, arrays of different shapes, a mask that is not a prefix per row or leaves a learner without a
decision, no learner at all, SNIPS with every episode weight 0 (the target never takes the logged actions), importance
weights that overflow the float range (a product of ratios pi_e / pi_b above about 1.8e308: tiny propensities over long
episodes), and bootstrap settings out of range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ESTIMATORS", "Estimate", "doubly_robust", "effective_sample_size", "episodes_from_rows", "estimate_all", "ips",
    "pdis", "snips",
]

DEFAULT_BOOTSTRAP_SAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
_BOOTSTRAP_CELLS = 4_000_000  # resample indices held at once (chunks of resamples x learners), ~32 MB of int64


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer: ``value`` with its percentile-bootstrap interval ``ci95`` (lo, hi) over learners
    (None below 2 learners, as outcomes.Mean's), the effective sample size ``ess`` (Kish, see the module docstring),
    ``learners`` n and ``decisions`` (the logged decisions counted). ``confidence`` is the interval's level (0.95
    unless asked otherwise)."""

    estimator: str
    value: float
    ci95: tuple[float, float] | None
    ess: float
    learners: int
    decisions: int
    confidence: float = DEFAULT_CONFIDENCE

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval (ends included); False without an interval."""
        return self.ci95 is not None and self.ci95[0] <= value <= self.ci95[1]

    def to_dict(self) -> dict:
        return {"estimator": self.estimator, "value": self.value,
                "ci95": list(self.ci95) if self.ci95 is not None else None, "ess": self.ess,
                "learners": self.learners, "decisions": self.decisions, "confidence": self.confidence}


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of non-negative weights (Kish 1965, Survey Sampling):
    n for equal weights, 1 when one weight carries everything, 0 when every weight is 0. ``weights`` float [n]
    (finite; scaled by the largest first, as the ratio is scale-free, so that weights near the float range do not
    overflow their squares)."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size and w.max() > 0:
        w = w / w.max()
    squares = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / squares) if squares > 0 else 0.0


def episodes_from_rows(learner, *columns) -> tuple[np.ndarray, list[np.ndarray]]:
    """Time-ordered rows of many learners -> the padded episode layout of this module.

    ``learner`` [N] (any comparable ids; each learner's rows in time order, learners in any order, the rows of
    one learner need not be contiguous), each of ``columns`` [N] (float) -> (``mask`` bool [n, T], the columns as
    float64 [n, T] with 0 where the mask is False), learners in sorted id order, T the longest episode. ValueError
    naming the column when its length differs from ``learner``'s.
    """
    learner = np.asarray(learner).reshape(-1)
    for k, column in enumerate(columns):
        if np.asarray(column).reshape(-1).shape != learner.shape:
            raise ValueError(f"columns[{k}]: expected {learner.size} rows like learner, got shape "
                             f"{np.asarray(column).shape}")
    if learner.size == 0:
        raise ValueError("learner: no rows (off-policy estimates need at least one logged decision)")
    order = np.argsort(learner, kind="stable")  # stable: each learner's rows keep their time order
    ids, first, counts = np.unique(learner[order], return_index=True, return_counts=True)
    step = np.arange(learner.size) - np.repeat(first, counts)
    row = np.repeat(np.arange(ids.size), counts)
    mask = np.zeros((ids.size, int(counts.max())), dtype=bool)
    mask[row, step] = True
    out = []
    for column in columns:
        padded = np.zeros(mask.shape, dtype=np.float64)
        padded[row, step] = np.asarray(column, dtype=np.float64).reshape(-1)[order]
        out.append(padded)
    return mask, out


def mean_reward_after(reward, mask=None) -> np.ndarray:
    """The log's mean reward-to-go after each step: ``c_t = mean_{i: t < T_i} sum_{t' > t} r_{i,t'}`` (0 for the last
    step, and for a step no learner reached), reward float [n, T] (mask as the estimators') -> float64 [T].

    Added to both ``q_hat`` and ``v_hat`` of step t, it is a crude model of the value of the future for doubly
    robust's direct method that keeps it unbiased: each learner's estimate changes by ``sum_t c_t (w_{t-1} - w_t)``,
    whose mean under the behaviour is 0 since E[w_t | the past] = w_{t-1} (Jiang & Li 2016, section 4: any
    state-dependent q keeps DR unbiased); c_t is fitted on the same log, a small dependence. Measured in
    bench/off_policy.py (``--direct-method memory_model+future``): RMSE 0.0029 against 0.0047 without it."""
    r = np.asarray(reward, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    m = np.ones(r.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(r.shape)
    r = np.where(m, r, 0.0)
    to_go = np.cumsum(r[:, ::-1], axis=1)[:, ::-1]  # reward from step t on
    after = np.zeros(r.shape[1])
    for t in range(r.shape[1] - 1):
        reached = m[:, t]
        if reached.any():
            after[t] = float(to_go[reached, t + 1].mean())
    return after


def ips(*, propensity, target_probability, reward, mask=None, seed: int = 0,
        bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES, confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Inverse propensity scoring over whole episodes (trajectory-wise importance sampling, Precup et al. 2000):
    ``mean_i w_i G_i``, w_i the product of the learner's ratios pi_e / pi_b, G_i its return. Arrays as in the
    module docstring ([n, T] or [n]); ``seed`` seeds the bootstrap over learners."""
    log = _Log.check(propensity=propensity, target_probability=target_probability, reward=reward, mask=mask)
    w = log.episode_weight()
    return _estimate("ips", log, w * log.returns(), None, seed=seed, bootstrap_samples=bootstrap_samples,
                     confidence=confidence, ess=effective_sample_size(w))


def snips(*, propensity, target_probability, reward, mask=None, seed: int = 0,
          bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES, confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Self-normalised inverse propensity scoring (weighted importance sampling, Precup et al. 2000; SNIPS,
    Swaminathan & Joachims 2015): ``sum_i w_i G_i / sum_i w_i``. A bootstrap resample whose weights are all 0 has no
    estimate and is left out of the interval. ValueError when every episode weight is 0."""
    log = _Log.check(propensity=propensity, target_probability=target_probability, reward=reward, mask=mask)
    w = log.episode_weight()
    if not np.any(w > 0):
        raise ValueError("target_probability: every learner's episode weight is 0 (the target policy never takes "
                         "all of a learner's logged actions), so the self-normalised estimate is undefined")
    return _estimate("snips", log, w * log.returns(), w, seed=seed, bootstrap_samples=bootstrap_samples,
                     confidence=confidence, ess=effective_sample_size(w))


def pdis(*, propensity, target_probability, reward, mask=None, seed: int = 0,
         bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES, confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Per-decision importance sampling (Precup, Sutton & Singh 2000, eq. 3, gamma = 1): ``mean_i sum_t w_t r_t``,
    each reward weighted by the ratios of the decisions up to and including its own."""
    log = _Log.check(propensity=propensity, target_probability=target_probability, reward=reward, mask=mask)
    w = log.cumulative_weight()
    return _estimate("pdis", log, np.sum(w * log.reward, axis=1), None, seed=seed,
                     bootstrap_samples=bootstrap_samples, confidence=confidence, ess=log.step_ess(w))


def doubly_robust(*, propensity, target_probability, reward, q_hat, v_hat, mask=None, seed: int = 0,
                  bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
                  confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """Sequential doubly robust (Jiang & Li 2016, eq. 9, gamma = 1): ``mean_i sum_t (w_{t-1} v_t + w_t (r_t - q_t))``
    with ``q_hat`` the direct method's q(s_t, a_t) of the logged action and ``v_hat`` its sum_a pi_e(a|s_t) q(s_t, a)
    (both the shape of ``reward``). One-step episodes: Dudik et al. 2011's DR ``v + rho (r - q)``."""
    log = _Log.check(propensity=propensity, target_probability=target_probability, reward=reward, mask=mask,
                     q_hat=q_hat, v_hat=v_hat)
    w = log.cumulative_weight()
    before = np.concatenate([np.ones((log.n, 1)), w[:, :-1]], axis=1)  # w_{t-1}, w_{-1} = 1
    per_step = np.where(log.mask, before * log.v_hat + w * (log.reward - log.q_hat), 0.0)
    return _estimate("dr", log, np.sum(per_step, axis=1), None, seed=seed, bootstrap_samples=bootstrap_samples,
                     confidence=confidence, ess=log.step_ess(w))


ESTIMATORS = {"ips": ips, "snips": snips, "pdis": pdis, "dr": doubly_robust}


def estimate_all(*, propensity, target_probability, reward, q_hat=None, v_hat=None, mask=None, seed: int = 0,
                 bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
                 confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Estimate]:
    """Every estimator on one log, in ``ESTIMATORS`` order: {"ips", "snips", "pdis", "dr"} -> ``Estimate``; "dr"
    only when q_hat and v_hat are given (ValueError naming the missing one when only one is). The same seed, so
    each bootstrap resamples the same learners."""
    if (q_hat is None) != (v_hat is None):
        raise ValueError(f"{'q_hat' if q_hat is None else 'v_hat'}: doubly robust needs both q_hat and v_hat")
    common = {"propensity": propensity, "target_probability": target_probability, "reward": reward, "mask": mask,
              "seed": seed, "bootstrap_samples": bootstrap_samples, "confidence": confidence}
    out = {name: ESTIMATORS[name](**common) for name in ("ips", "snips", "pdis")}
    if q_hat is not None:
        out["dr"] = doubly_robust(q_hat=q_hat, v_hat=v_hat, **common)
    return out


@dataclass(frozen=True)
class _Log:
    """The checked log: float64 arrays [n, T], 0 (ratio 1) where ``mask`` is False."""

    ratio: np.ndarray  # pi_e / pi_b
    reward: np.ndarray
    mask: np.ndarray  # bool
    q_hat: np.ndarray | None = None
    v_hat: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.ratio.shape[0]

    @classmethod
    def check(cls, *, propensity, target_probability, reward, mask, q_hat=None, v_hat=None) -> "_Log":
        named = {"propensity": propensity, "target_probability": target_probability, "reward": reward}
        if q_hat is not None:
            named.update(q_hat=q_hat, v_hat=v_hat)
        arrays = {}
        for name, value in named.items():
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{name}: expected an array of numbers, got {type(value).__name__}") from None
            if array.ndim == 1:
                array = array[:, None]  # one decision per learner
            if array.ndim != 2:
                raise ValueError(f"{name}: expected shape [learners, steps] or [learners], got {np.shape(value)}")
            arrays[name] = array
        shape = arrays["propensity"].shape
        for name, array in arrays.items():
            if array.shape != shape:
                raise ValueError(f"{name}: shape {np.shape(named[name])} differs from propensity's "
                                 f"{np.shape(propensity)}")
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"propensity: no learner or no decision (shape {np.shape(propensity)})")
        if mask is None:
            mask = np.ones(shape, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.dtype != bool:
                raise ValueError(f"mask: expected booleans, got dtype {mask.dtype}")
            mask = mask[:, None] if mask.ndim == 1 else mask
            if mask.shape != shape:
                raise ValueError(f"mask: shape {mask.shape} differs from propensity's {np.shape(propensity)}")
            if not mask[:, 0].all():
                raise ValueError(f"mask: learners {np.flatnonzero(~mask[:, 0])[:5].tolist()} have no decision "
                                 "(each row must start with True)")
            if np.any(mask[:, 1:] & ~mask[:, :-1]):
                raise ValueError("mask: each learner's decisions must be a prefix of its row (True then False)")
        for name, array in arrays.items():
            bad = ~np.isfinite(array) & mask
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{name}: NaN or infinity at learner, step {where}")
        pb, pe = arrays["propensity"], arrays["target_probability"]
        bad = mask & ((pb <= 0) | (pb > 1))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"propensity: expected a probability in (0, 1] (the logging policy chose the action, "
                             f"so it was possible), got {pb[where]!r} at learner, step {where}")
        bad = mask & ((pe < 0) | (pe > 1))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"target_probability: expected a probability in [0, 1], got {pe[where]!r} at "
                             f"learner, step {where}")
        ratio = np.where(mask, pe / np.where(mask, pb, 1.0), 1.0)

        def zeroed(name: str) -> np.ndarray | None:
            return np.where(mask, arrays[name], 0.0) if name in arrays else None

        return cls(ratio=ratio, reward=zeroed("reward"), mask=mask, q_hat=zeroed("q_hat"), v_hat=zeroed("v_hat"))

    def cumulative_weight(self) -> np.ndarray:
        """w_t = rho_0 ... rho_t, float64 [n, T] (constant past a learner's last decision, where rho is 1).
        ValueError when one overflows."""
        with np.errstate(over="ignore", invalid="ignore"):
            return _finite_weights(np.cumprod(self.ratio, axis=1))

    def episode_weight(self) -> np.ndarray:
        """The product of a learner's ratios, float64 [n]. ValueError when one overflows."""
        with np.errstate(over="ignore", invalid="ignore"):
            return _finite_weights(np.prod(self.ratio, axis=1))

    def returns(self) -> np.ndarray:
        """Each learner's return (the sum of its rewards), float64 [n]."""
        return np.sum(self.reward, axis=1)

    def step_ess(self, w: np.ndarray) -> float:
        """The mean over steps t of the Kish ESS of w_t over the learners who made a decision t."""
        return float(np.mean([effective_sample_size(w[self.mask[:, t], t]) for t in range(w.shape[1])]))


_OVERFLOW = ("propensity: the importance weights overflowed (a learner's product of ratios pi_e / pi_b over its "
             "decisions, or a sum of weighted returns, exceeds the float range, about 1.8e308): the logged "
             "propensities are too small for so many decisions per learner; estimate over fewer decisions per learner "
             "(a shorter window) or from a log with more exploration")


def _finite_weights(w: np.ndarray) -> np.ndarray:
    """``w`` as it is when every weight is finite; ValueError saying the weights overflowed otherwise."""
    if not np.isfinite(w).all():
        raise ValueError(_OVERFLOW)
    return w


def _estimate(name: str, log: _Log, numerator: np.ndarray, denominator: np.ndarray | None, *, seed: int,
              bootstrap_samples: int, confidence: float, ess: float) -> Estimate:
    """The estimate ``sum numerator / sum denominator`` (denominator None: n) over learners, and its percentile
    bootstrap interval: ``bootstrap_samples`` resamples of n learners with replacement from ``seed``'s stream (no
    interval below 2 learners). ValueError when a weighted return, the estimate or a resample's overflows."""
    if isinstance(bootstrap_samples, bool) or not isinstance(bootstrap_samples, (int, np.integer)) \
            or bootstrap_samples < 100:
        raise ValueError(f"bootstrap_samples: expected an integer >= 100, got {bootstrap_samples!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    n = log.n
    ones = np.ones(n) if denominator is None else denominator
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(np.sum(numerator) / np.sum(ones))
    if not (np.isfinite(numerator).all() and np.isfinite(value)):
        raise ValueError(_OVERFLOW)
    if n < 2:  # one learner's resamples are all that learner: no interval (outcomes.Mean's rule)
        return Estimate(estimator=name, value=value, ci95=None, ess=ess, learners=n,
                        decisions=int(log.mask.sum()), confidence=float(confidence))
    rng = np.random.default_rng(seed)
    values = np.empty(bootstrap_samples)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, bootstrap_samples, chunk):
        stop = min(bootstrap_samples, start + chunk)
        picks = rng.integers(0, n, size=(stop - start, n))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            top = numerator[picks].sum(axis=1)
            bottom = np.full(stop - start, float(n)) if denominator is None else denominator[picks].sum(axis=1)
            values[start:stop] = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)
    if np.isinf(values).any():  # a resample repeating the largest weighted returns overflowed
        raise ValueError(_OVERFLOW)
    values = values[np.isfinite(values)]  # SNIPS: a resample whose weights are all 0 has no estimate
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return Estimate(estimator=name, value=value, ci95=(float(lo), float(hi)), ess=ess, learners=n,
                    decisions=int(log.mask.sum()), confidence=float(confidence))
