"""The encoder's parameters (``EncoderConfig``), the state's feature layout, and the encoder identity: the hash
that says whether a stored learner state was encoded the way a policy version reads it (NumPy only).

State layout (``state_dim = FEATURES_PER_CONCEPT * num_concepts``, concept-major: feature j of the concept at
position c is ``state[c * 4 + j]``):

* 0 recall:     R at the decision time, in [0, 1]; 0 when never reviewed
* 1 elapsed:    ``log1p(hours since the last review) / log1p(24 * 30)``; -1 when never reviewed
* 2 reviews:    ``log1p(number of reviews) / log1p(100)``
* 3 stability:  ``log1p(S in hours) / log1p(24 * 365)``; 0 when never reviewed

Estimators (``EncoderConfig.estimator``, see ``memory.py``): "fsrs6", FSRS-6 with ``fsrs6_parameters`` (21 floats;
None = the package's defaults) and a same-day rule, ``fsrs6_same_day_stability`` (4 stabilities in days, what fits
produce) or ``fsrs6_same_day_recall`` (4 constants, encoders fitted before it), fitted per curriculum by
``fsrs_fit.fit_fsrs6``; with neither, ``fsrs6_same_day_default`` gives FSRS-6's default same-day stabilities
(``fsrs6.default_same_day_stability``; encoders made before the field existed have none and keep the package's
same-day recall 1.0), and per concept ``concept_recall_exponent`` (R ** k_c; None = 1); "halflife", the estimator
before FSRS-6 (fixed half-life parameters and per-concept ``concept_stability`` factors), which configs exported
before the estimator key existed keep serving with. S is FSRS-6's stability (recall 0.9) for "fsrs6" and the
half-life for "halflife".
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from . import fsrs6

FEATURES_PER_CONCEPT = 4
ESTIMATORS = ("fsrs6", "halflife")
# The parameters only the half-life estimator reads; an "fsrs6" config must leave them at their defaults.
HALFLIFE_FIELDS = ("initial_stability_s", "initial_difficulty", "difficulty_step", "growth", "recall_exponent",
                   "grade_factor", "lapse_factor", "max_stability_s", "concept_stability")
STATE_FEATURES = ("recall", "elapsed", "reviews", "stability")
# The fields that hold one value per concept (in position order; None = 1 for every concept), and what a value is.
PER_CONCEPT_FIELDS = {"concept_stability": "factors", "concept_recall_exponent": "exponents"}
NEVER_REVIEWED_ELAPSED = -1.0


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's parameters; stored with datasets and policy versions (``dt_lite_config.json["encoder"]``).

    ``EncoderConfig(num_concepts=C)`` is FSRS-6 with the default parameters (the unfitted encoder). A dict without
    an ``estimator`` key (exported before FSRS-6) is the half-life estimator; its dict and identity are as before.
    """

    num_concepts: int
    horizon_s: float = 86400.0
    estimator: str = "fsrs6"
    # FSRS-6's 21 parameters (fitted to the curriculum's log; None = fsrs6.DEFAULT_PARAMETERS) and same-day table
    # (recall less than a whole day after a review, by the previous grade; None = the package's 1.0).
    fsrs6_parameters: tuple[float, ...] | None = None
    fsrs6_same_day_recall: tuple[float, float, float, float] | None = None
    # Same-day stabilities (days) by the previous grade: recall less than a day after a review on FSRS-6's curve at
    # fractional days (fsrs6's same-day rule; what fits produce). At most one of the two same-day rules.
    fsrs6_same_day_stability: tuple[float, float, float, float] | None = None
    # With neither same-day rule above: True, the default same-day stabilities of the parameters
    # (fsrs6.default_same_day_stability); False, the package's recall 1.0 less than a day after a review (what an
    # encoder config stored before this field had: from_dict reads a dict without the key as False, so old
    # versions keep their behaviour and identity). Normalised to False where it does not apply (a same-day rule
    # given, or estimator "halflife"), so it never changes such a config's dict or identity.
    fsrs6_same_day_default: bool = True
    # Per concept (in position order), an exponent on FSRS-6's retrievability: R_c = R ** k_c, so a concept whose
    # memories fade faster than the population's (a harder one) has k > 1; for an exponential curve it divides the
    # half-life by k. Fitted to the curriculum's log across learners (``fit.fit_concept_recall_exponents``: a
    # per-item difficulty, as item parameters in IRT or HLR's item features). None: 1 for every concept.
    concept_recall_exponent: tuple[float, ...] | None = None
    # ---- the half-life estimator's parameters (estimator "halflife" only)
    initial_stability_s: tuple[float, float, float, float] = (86400.0, 129600.0, 172800.0, 259200.0)
    initial_difficulty: float = 5.0
    difficulty_step: float = 0.5
    growth: float = 6.0
    recall_exponent: float = 1.0
    grade_factor: tuple[float, float, float, float] = (0.0, 0.7, 1.0, 1.3)
    lapse_factor: float = 0.5
    max_stability_s: float = 365 * 86400.0
    # Per concept (in position order), a factor on the first review's stability: how much longer or shorter than
    # the population's median this concept's first memory lasts, fitted to a log by ConceptStabilityFit.
    # None: 1 for every concept (the unfitted encoder).
    concept_stability: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if int(self.num_concepts) < 1:
            raise ValueError(f"num_concepts: expected a positive integer, got {self.num_concepts!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.estimator == "fsrs6":
            defaults = {f.name: f.default for f in fields(self)}
            changed = [name for name in HALFLIFE_FIELDS if not _same(getattr(self, name), defaults[name])]
            if changed:
                raise ValueError(f"{changed[0]}: a half-life estimator parameter; estimator 'fsrs6' does not read it")
            if self.fsrs6_parameters is not None:
                object.__setattr__(self, "fsrs6_parameters",
                                   tuple(float(v) for v in fsrs6.check_parameters(self.fsrs6_parameters)))
            table = fsrs6.check_same_day_recall(self.fsrs6_same_day_recall)
            object.__setattr__(self, "fsrs6_same_day_recall", None if table is None else tuple(float(v) for v in table))
            short = fsrs6.check_same_day_stability(self.fsrs6_same_day_stability)
            object.__setattr__(self, "fsrs6_same_day_stability",
                               None if short is None else tuple(float(v) for v in short))
            if table is not None and short is not None:
                raise ValueError("fsrs6_same_day_stability: give one same-day rule, not it and fsrs6_same_day_recall")
            if not isinstance(self.fsrs6_same_day_default, (bool, np.bool_)):
                raise ValueError(f"fsrs6_same_day_default: expected true or false, got {self.fsrs6_same_day_default!r}")
            object.__setattr__(self, "fsrs6_same_day_default",
                               bool(self.fsrs6_same_day_default) and table is None and short is None)
        elif (self.fsrs6_parameters is not None or self.fsrs6_same_day_recall is not None
              or self.fsrs6_same_day_stability is not None):
            raise ValueError("fsrs6_parameters: an FSRS-6 parameter; estimator 'halflife' does not read it")
        else:
            object.__setattr__(self, "fsrs6_same_day_default", False)  # the half-life estimator has no same-day rule
        if self.concept_recall_exponent is not None and self.estimator != "fsrs6":
            raise ValueError("concept_recall_exponent: an FSRS-6 parameter; estimator 'halflife' does not read it")
        for name, noun in PER_CONCEPT_FIELDS.items():  # one positive finite value per concept, or None
            if getattr(self, name) is None:
                continue
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != int(self.num_concepts):
                raise ValueError(f"{name}: {len(values)} {noun} for {self.num_concepts} concepts")
            if not all(np.isfinite(v) and v > 0 for v in values):
                raise ValueError(f"{name}: {noun} must be finite and > 0")
            object.__setattr__(self, name, values)
        for name in ("initial_stability_s", "grade_factor"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"{name}: expected 4 values (grades 1-4), got {getattr(self, name)!r}")
        # JSON gives lists; keep tuples so configs compare equal and stay hashable.
        object.__setattr__(self, "initial_stability_s", tuple(float(v) for v in self.initial_stability_s))
        object.__setattr__(self, "grade_factor", tuple(float(v) for v in self.grade_factor))
        object.__setattr__(self, "num_concepts", int(self.num_concepts))

    @property
    def state_dim(self) -> int:
        return FEATURES_PER_CONCEPT * self.num_concepts

    @property
    def parameters(self) -> tuple[float, ...]:
        """FSRS-6's 21 parameters this encoder uses (the defaults when unfitted); estimator "fsrs6" only."""
        return self.fsrs6_parameters if self.fsrs6_parameters is not None else fsrs6.DEFAULT_PARAMETERS

    @property
    def same_day_stability(self) -> tuple[float, float, float, float] | None:
        """The same-day stabilities (days, by the previous grade 1-4) the encoder reads: the fitted ones, else the
        defaults of ``parameters`` when ``fsrs6_same_day_default``, else None (the constant table, or the package's
        recall 1.0). Always None for "halflife"."""
        if self.fsrs6_same_day_stability is not None:
            return self.fsrs6_same_day_stability
        if self.fsrs6_same_day_default:
            return fsrs6.default_same_day_stability(self.parameters)
        return None

    def with_num_concepts(self, num_concepts: int) -> "EncoderConfig":
        """This encoder for another number of concepts: FSRS-6's parameters are the same for every concept; the
        per-concept values (the half-life estimator's factors, FSRS-6's recall exponents) are kept for the concepts
        both have, a concept beyond them is unfitted (1)."""
        resized = {}
        for name in PER_CONCEPT_FIELDS:
            values = getattr(self, name)
            resized[name] = None if values is None else (values + (1.0,) * num_concepts)[:num_concepts]
        return replace(self, num_concepts=num_concepts, **resized)

    def to_dict(self) -> dict:
        """JSON-ready. "fsrs6": num_concepts, horizon_s, estimator, fsrs6_parameters (when fitted),
        fsrs6_same_day_recall or fsrs6_same_day_stability (when fitted), ``"fsrs6_same_day_default": true`` (the
        default same-day rule; absent in configs stored before it, read as false), concept_recall_exponent (when
        fitted; absent = 1 for every concept, so older configs keep their dict and identity), features. "halflife":
        the dict of configs exported before FSRS-6 (no estimator key), so their identities do not change."""
        if self.estimator == "fsrs6":
            data = {"num_concepts": self.num_concepts, "horizon_s": self.horizon_s, "estimator": "fsrs6"}
            if self.fsrs6_parameters is not None:
                data["fsrs6_parameters"] = list(self.fsrs6_parameters)
            if self.fsrs6_same_day_recall is not None:
                data["fsrs6_same_day_recall"] = list(self.fsrs6_same_day_recall)
            if self.fsrs6_same_day_stability is not None:
                data["fsrs6_same_day_stability"] = list(self.fsrs6_same_day_stability)
            if self.fsrs6_same_day_default:
                data["fsrs6_same_day_default"] = True
            if self.concept_recall_exponent is not None:
                data["concept_recall_exponent"] = list(self.concept_recall_exponent)
            data["features"] = list(STATE_FEATURES)
            return data
        data = asdict(self)
        for name in ("estimator", "fsrs6_parameters", "fsrs6_same_day_recall", "fsrs6_same_day_stability",
                     "fsrs6_same_day_default", "concept_recall_exponent"):
            del data[name]
        data["initial_stability_s"] = list(self.initial_stability_s)
        data["grade_factor"] = list(self.grade_factor)
        data["features"] = list(STATE_FEATURES)
        if self.concept_stability is None:
            del data["concept_stability"]  # an unfitted encoder's dict is as it was before the field existed
        else:
            data["concept_stability"] = list(self.concept_stability)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        """The inverse of ``to_dict``; a dict without ``estimator`` is the half-life estimator (older exports), one
        without ``fsrs6_same_day_default`` has no default same-day rule (stored before it existed).
        ValueError naming the key for unknown keys, other features, or a value out of bounds."""
        data = dict(data)
        data.setdefault("estimator", "halflife")
        data.setdefault("fsrs6_same_day_default", False)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"features"})
        if unknown:
            raise ValueError(f"encoder config: unknown keys {unknown}")
        if "features" in data and list(data["features"]) != list(STATE_FEATURES):
            raise ValueError(f"encoder config: features {data['features']!r} differ from {list(STATE_FEATURES)!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


def _same(value, default) -> bool:
    """A parameter equal to its default (a JSON list equals the default tuple)."""
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return tuple(float(v) for v in value) == tuple(float(v) for v in default)
    return value == default


def encoder_identity(config: EncoderConfig, *, context_length: int) -> str:
    """The identity of an encoding: a 64-character lowercase hex SHA-256 of the encoder's parameters and the
    context length (the reviews a serving state keeps), over a canonical JSON form (sorted keys, floats as
    floats, no whitespace). Equal configs give equal identities in every process and after a JSON round trip
    (``EncoderConfig.from_dict(config.to_dict())``); any change of a parameter or of the context length changes
    it. Stored on each policy version and each learner state, so reading a state compares two strings.

    Raises ValueError when ``context_length`` is not a positive integer.
    """
    if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1:
        raise ValueError(f"context_length: expected a positive integer, got {context_length!r}")
    canonical = {}
    for name, value in config.to_dict().items():
        if name in ("num_concepts", "features", "estimator", "fsrs6_same_day_default"):
            canonical[name] = value
        elif isinstance(value, list):
            canonical[name] = [float(v) for v in value]
        else:
            canonical[name] = float(value)  # 86400 and 86400.0 are the same parameter
    text = json.dumps({"encoder": canonical, "context_length": context_length}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
