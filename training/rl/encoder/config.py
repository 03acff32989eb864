"""The encoder's parameters (``EncoderConfig``), the state's feature layout, and the encoder identity: the hash
that says whether a stored learner state was encoded the way a policy version reads it (NumPy only).

State layout (``state_dim = FEATURES_PER_CONCEPT * num_concepts``, concept-major: feature j of the concept at
position c is ``state[c * 4 + j]``):

* 0 recall:     R at the decision time, in [0, 1]; 0 when never reviewed
* 1 elapsed:    ``log1p(hours since the last review) / log1p(24 * 30)``; -1 when never reviewed
* 2 reviews:    ``log1p(number of reviews) / log1p(100)``
* 3 stability:  ``log1p(S in hours) / log1p(24 * 365)``; 0 when never reviewed
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

FEATURES_PER_CONCEPT = 4
STATE_FEATURES = ("recall", "elapsed", "reviews", "stability")
NEVER_REVIEWED_ELAPSED = -1.0


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's parameters; stored with datasets and policy versions (``dt_lite_config.json["encoder"]``)."""

    num_concepts: int
    horizon_s: float = 86400.0
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
        if self.concept_stability is not None:
            factors = tuple(float(v) for v in self.concept_stability)
            if len(factors) != int(self.num_concepts):
                raise ValueError(f"concept_stability: {len(factors)} factors for {self.num_concepts} concepts")
            if not all(np.isfinite(v) and v > 0 for v in factors):
                raise ValueError("concept_stability: factors must be finite and > 0")
            object.__setattr__(self, "concept_stability", factors)
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

    def with_num_concepts(self, num_concepts: int) -> "EncoderConfig":
        """This encoder for another number of concepts: fitted factors are kept for the concepts both have, and
        a concept beyond them is unfitted (factor 1)."""
        factors = self.concept_stability
        if factors is not None:
            factors = (factors + (1.0,) * num_concepts)[:num_concepts]
        return replace(self, num_concepts=num_concepts, concept_stability=factors)

    def to_dict(self) -> dict:
        data = asdict(self)
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"features"})
        if unknown:
            raise ValueError(f"encoder config: unknown keys {unknown}")
        if "features" in data and list(data["features"]) != list(STATE_FEATURES):
            raise ValueError(f"encoder config: features {data['features']!r} differ from {list(STATE_FEATURES)!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


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
        if name in ("num_concepts", "features"):
            canonical[name] = value
        elif isinstance(value, list):
            canonical[name] = [float(v) for v in value]
        else:
            canonical[name] = float(value)  # 86400 and 86400.0 are the same parameter
    text = json.dumps({"encoder": canonical, "context_length": context_length}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
