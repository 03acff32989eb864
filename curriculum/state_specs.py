"""How a stored learner state is encoded (`StateSpec`): the encoder's parameters, the context length, and the
encoder identity (their hash) that a stored state carries instead of the parameters themselves."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from training.rl.encoder import EncodedLearnerState, EncoderConfig, StateEncoder, encoder_identity
from training.rl.model_config import DEFAULT_CONTEXT_LENGTH, scores_unseen_concepts

# The `LearnerState.data` key that holds the identity of the encoding the state was stored in.
IDENTITY_KEY = "encoder_identity"


@dataclass(frozen=True)
class StateSpec:
    """How a learner state is encoded: the encoder's parameters and the context length it keeps reviews for."""

    encoder_config: EncoderConfig
    context_length: int
    # The policy's model scores concepts added to the curriculum after training from their features (summary
    # state token + concept head, see training/rl/dtlite.py): its learner states then encode every concept of the
    # curriculum (`widened`). Not part of the identity: it follows from the policy, not from the encoding.
    scores_unseen_concepts: bool = False

    @classmethod
    def for_policy(cls, config: Mapping[str, Any]) -> StateSpec:
        """The spec a policy version was trained with (its `dt_lite_config.json`); KeyError/ValueError naming the
        key when the config has no usable `encoder` or `context_length`."""
        return cls(EncoderConfig.from_dict(config["encoder"]), int(config["context_length"]),
                   scores_unseen_concepts(config))

    def scoring_unseen(self, flag: bool) -> StateSpec:
        """This spec with scores_unseen_concepts set to flag (same encoding, same identity)."""
        return self if self.scores_unseen_concepts == flag else _with_flag(self, flag)

    def widened(self, *, num_concepts: int) -> StateSpec:
        """This spec over num_concepts concepts when the policy scores concepts added after training and the
        curriculum has more than it was trained on (the added ones unfitted, EncoderConfig.with_num_concepts);
        else this spec."""
        if not self.scores_unseen_concepts or num_concepts <= self.num_concepts:
            return self
        return _widened_spec(self, num_concepts)

    @classmethod
    def default(cls, *, num_concepts: int) -> StateSpec:
        """The unfitted encoder over `num_concepts` (at least 1) concepts, with the model's default context
        (model_config.DEFAULT_CONTEXT_LENGTH): how states are encoded while no policy version is active."""
        return _default_spec(max(num_concepts, 1))

    @cached_property
    def encoder(self) -> StateEncoder:
        return StateEncoder(self.encoder_config)

    @cached_property
    def identity(self) -> str:
        """`encoder_identity` of this spec: 64 hex characters, equal for equal specs in every process."""
        return encoder_identity(self.encoder_config, context_length=self.context_length)

    @property
    def num_concepts(self) -> int:
        return self.encoder_config.num_concepts

    def new_state(self) -> EncodedLearnerState:
        return EncodedLearnerState.new(encoder=self.encoder, context_length=self.context_length)

    def load(self, data: Mapping[str, Any] | None,
             history_states: bytes | memoryview | None = None) -> EncodedLearnerState | None:
        """The stored state if it was encoded with this spec (same identity), else None (the caller rebuilds
        from history). ``history_states``: `LearnerState.history_states`, the history's states kept apart (None:
        inside ``data``, as rows written before that column). ValueError for a state that does not decode."""
        if not data or data.get(IDENTITY_KEY) != self.identity:
            return None
        return EncodedLearnerState.from_dict(data["state"], encoder=self.encoder, history_states=history_states)

    def dump(self, state: EncodedLearnerState, *, last_review: tuple[float, int] | None,
             history_states: bool = True) -> dict[str, Any]:
        """{"encoder_identity", "last_review": [t, id] | null, "state": state.to_dict()}: the whole state as one
        JSON-safe document. ``history_states`` False: without the history's states (``stored``'s form)."""
        return {
            IDENTITY_KEY: self.identity,
            # (time, id) of the newest review folded in: the order the full history is read in, so equal
            # times are applied in id order on both paths
            "last_review": None if last_review is None else list(last_review),
            "state": state.to_dict(history_states=history_states),
        }

    def stored(self, state: EncodedLearnerState, *,
               last_review: tuple[float, int] | None) -> tuple[dict[str, Any], bytes]:
        """What a `LearnerState` row stores: (``data``, ``history_states``), the document without the history's
        states, and those states as raw bytes (float32 [k, state_dim]; about 0.8 of a default state's JSON as
        base64, read by serving without a JSON or base64 decode)."""
        return self.dump(state, last_review=last_review, history_states=False), state.history_state_bytes()


@lru_cache(maxsize=256)
def _with_flag(spec: StateSpec, flag: bool) -> StateSpec:
    return StateSpec(spec.encoder_config, spec.context_length, flag)


@lru_cache(maxsize=256)
def _widened_spec(spec: StateSpec, num_concepts: int) -> StateSpec:
    # one per (policy spec, size): its encoder and identity are built once, not per request
    return StateSpec(spec.encoder_config.with_num_concepts(num_concepts), spec.context_length, True)


@lru_cache(maxsize=256)
def _default_spec(num_concepts: int) -> StateSpec:
    # one per size, so that its encoder and identity are built once, not per request
    return StateSpec(EncoderConfig(num_concepts=num_concepts), DEFAULT_CONTEXT_LENGTH)


def policy_identity(config: Mapping[str, Any]) -> str:
    """The encoder identity of a policy version's config, or "" for one without an encoder and context length
    (a hand-made config: it cannot serve, states stay in the default encoding)."""
    if "encoder" not in config or "context_length" not in config:
        return ""
    return StateSpec.for_policy(config).identity
