"""StateSpec reads the model's facts from training/rl/model_config.py: the default context length and which
policy versions score concepts added after training."""
from __future__ import annotations

import pytest

from curriculum.state_specs import StateSpec
from training.rl.dt import DTConfig
from training.rl.encoder import EncoderConfig
from training.rl.model_config import DEFAULT_CONTEXT_LENGTH


def test_states_without_a_policy_keep_the_context_a_new_model_is_built_with():
    spec = StateSpec.default(num_concepts=3)
    assert spec.context_length == DTConfig(state_dim=12, action_dim=3).context_length == DEFAULT_CONTEXT_LENGTH
    assert spec.new_state().history_length == DEFAULT_CONTEXT_LENGTH - 1  # the reviews before the decision


@pytest.mark.parametrize("state_token, features, widened", [("summary", 4, True), ("linear", 4, False),
                                                            (None, 4, False), ("summary", 0, False)])
def test_a_policy_spec_widens_to_added_concepts_only_when_its_model_scores_them(state_token, features, widened):
    config = {"encoder": EncoderConfig(num_concepts=3).to_dict(), "context_length": 5, "concept_features": features}
    if state_token is not None:
        config["state_token"] = state_token
    spec = StateSpec.for_policy(config)
    assert spec.scores_unseen_concepts is widened
    assert spec.widened(num_concepts=5).num_concepts == (5 if widened else 3)
