"""The ONE state encoder, shared by trajectory extraction, closed-loop evaluation and serving, so a policy sees
the same numbers in training and in production (NumPy only, no Django). It reads the review log alone (never
simulator internals), so it works the same on synthetic, imported and live logs.

- ``config``: ``EncoderConfig`` (the parameters), the state layout, ``encoder_identity`` (the encoding's hash)
- ``memory``: the recall estimator (``StateEncoder``, ``EncoderMemory``) and the reward
- ``fit``: ``ConceptStabilityFit``, fitting the per-concept factors to a log
- ``state``: ``EncodedLearnerState``, one learner's serving state
"""
from .config import FEATURES_PER_CONCEPT, NEVER_REVIEWED_ELAPSED, STATE_FEATURES, EncoderConfig, encoder_identity
from .fit import ConceptStabilityFit, concept_sequences
from .memory import EncoderMemory, StateEncoder, effective_grade
from .state import EncodedLearnerState

__all__ = [
    "FEATURES_PER_CONCEPT",
    "NEVER_REVIEWED_ELAPSED",
    "STATE_FEATURES",
    "ConceptStabilityFit",
    "EncodedLearnerState",
    "EncoderConfig",
    "EncoderMemory",
    "StateEncoder",
    "concept_sequences",
    "effective_grade",
    "encoder_identity",
]
