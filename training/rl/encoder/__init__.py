"""The ONE state encoder, shared by trajectory extraction, closed-loop evaluation and serving, so a policy sees
the same numbers in training and in production (NumPy only, no Django). It reads the review log alone (never
simulator internals), so it works the same on synthetic, imported and live logs.

- ``config``: ``EncoderConfig`` (the parameters), the state layout, ``encoder_identity`` (the encoding's hash)
- ``memory``: the recall estimator (``StateEncoder``, ``EncoderMemory``: FSRS-6, or the older half-life) and the reward
- ``fsrs6``, ``fsrs_fit``: FSRS-6 in NumPy and its fit (fsrs-rs)
- ``fit``: ``fit_encoder_config``, the FSRS-6 encoder fitted to a log's time-ordered train part
- ``state``: ``EncodedLearnerState``, one learner's serving state
"""
from .config import FEATURES_PER_CONCEPT, NEVER_REVIEWED_ELAPSED, STATE_FEATURES, EncoderConfig, encoder_identity
from .fit import TRAIN_FRACTION, concept_sequences, fit_encoder_config, time_split, train_part
from .memory import EncoderMemory, StateEncoder, effective_grade
from .state import EncodedLearnerState

__all__ = [
    "FEATURES_PER_CONCEPT",
    "NEVER_REVIEWED_ELAPSED",
    "STATE_FEATURES",
    "TRAIN_FRACTION",
    "EncodedLearnerState",
    "EncoderConfig",
    "EncoderMemory",
    "StateEncoder",
    "concept_sequences",
    "effective_grade",
    "encoder_identity",
    "fit_encoder_config",
    "time_split",
    "train_part",
]
