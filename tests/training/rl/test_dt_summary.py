"""The summary state token: DTLite equals the PyTorch model at 20 and 1,000 concepts, exports with the linear
token (made before the summary existed) still load and serve, and concepts added after training are scored."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig, StateSummary
from training.rl.dtlite import DTLite
from training.rl.dtlite import StateSummary as LiteStateSummary
from training.rl.model_config import scores_unseen_concepts, summary_dim

K = 6
F = 4
TOLERANCE = 1e-4


def encoder_like_states(rng: np.random.Generator, shape: tuple[int, ...], concepts: int) -> np.ndarray:
    """States in the encoder's layout: some concepts never reviewed (recall 0, elapsed -1, reviews 0,
    stability 0), the others with recall in [0, 1] and positive counts."""
    reviewed = rng.random(shape + (concepts,)) < 0.4
    x = np.zeros(shape + (concepts, F), np.float32)
    x[..., 0] = np.where(reviewed, rng.random(reviewed.shape), 0.0)
    x[..., 1] = np.where(reviewed, rng.random(reviewed.shape), -1.0)
    x[..., 2] = np.where(reviewed, rng.uniform(0.1, 1.0, reviewed.shape), 0.0)
    x[..., 3] = np.where(reviewed, rng.random(reviewed.shape), 0.0)
    return x.reshape(shape + (concepts * F,))


def summary_model(concepts: int, **overrides) -> DecisionTransformer:
    torch.manual_seed(3)
    config = dict(state_dim=F * concepts, action_dim=concepts, hidden_dim=32, num_layers=2, num_heads=4,
                  context_length=K, max_timestep=64, return_scale=3.0, concept_features=F, concept_head_dim=16,
                  state_token="summary")
    model = DecisionTransformer(DTConfig(**(config | overrides))).eval()
    with torch.no_grad():  # larger than init-sized weights, so that every block matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def export(model: DecisionTransformer, directory) -> DTLite:
    A = model.config.action_dim
    export_artifacts(model=model, output_dir=directory, concept_keys=[f"c{i}" for i in range(A)], encoder={},
                     target_return=2.0)
    return DTLite.load(directory / "dt_lite_weights.npz", directory / "dt_lite_config.json")


def inputs(rng: np.random.Generator, B: int, T: int, concepts: int, padded: bool):
    rtg = rng.uniform(0, 3, (B, T)).astype(np.float32)
    states = encoder_like_states(rng, (B, T), concepts)
    actions = rng.integers(0, concepts, (B, T))
    timesteps = np.sort(rng.integers(0, 80, (B, T)), axis=1)
    mask = np.ones((B, T), np.int64)
    if padded:
        pad = rng.integers(0, T, B)
        mask[np.arange(T)[None, :] < pad[:, None]] = 0
    return rtg, states, actions, timesteps, mask


@pytest.fixture(scope="module", params=[20, 1000], ids=["C20", "C1000"])
def pair(request, tmp_path_factory):
    model = summary_model(request.param)
    return request.param, model, export(model, tmp_path_factory.mktemp(f"summary{request.param}"))


def test_the_state_token_has_a_fixed_size_whatever_the_number_of_concepts():
    small, large = summary_model(20), summary_model(1000)
    assert small.embed_state.weight.shape == large.embed_state.weight.shape == (32, summary_dim(F))
    transformer = sum(p.numel() for n, p in large.named_parameters() if n.startswith("blocks."))
    assert transformer == sum(p.numel() for n, p in small.named_parameters() if n.startswith("blocks."))


def test_the_summary_is_as_documented():
    # two concepts reviewed (recall 0.4 and 0.95), one never reviewed
    x = np.array([[0.4, 0.2, 0.3, 0.5], [0.95, 0.1, 0.6, 0.7], [0.0, -1.0, 0.0, 0.0]], np.float32)
    states = x.reshape(1, 1, -1)
    config = {"concept_features": F}
    got = LiteStateSummary(config)(states)[0, 0]
    expected = np.concatenate([
        [2 / 3, np.log1p(2) / np.log1p(1000)],
        [1 / 3, 1 / 3, 1 / 3],  # recall < 0.5, 0.7, 0.9 among reviewed: only the first
        x.mean(0), x[:2].mean(0), x[:2].min(0), x[:2].max(0),
    ])
    assert np.allclose(got, expected, atol=1e-6)
    torch_summary = StateSummary(DTConfig(state_dim=3 * F, action_dim=3, concept_features=F, state_token="summary"))
    assert np.allclose(torch_summary(torch.from_numpy(states)).numpy()[0, 0], expected, atol=1e-6)
    nothing = np.tile(np.array([0.0, -1.0, 0.0, 0.0], np.float32), 3).reshape(1, 1, -1)
    assert np.isfinite(LiteStateSummary(config)(nothing)).all()
    assert np.isfinite(torch_summary(torch.from_numpy(nothing)).numpy()).all()


@pytest.mark.parametrize("B", [1, 64])
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
def test_dtlite_equals_pytorch_with_the_summary_token(pair, B, padded):
    concepts, model, lite = pair
    rng = np.random.default_rng(B + 7 * padded + concepts)
    rtg, states, actions, timesteps, mask = inputs(rng, B, K, concepts, padded)
    with torch.no_grad():
        expected = model(torch.from_numpy(rtg), torch.from_numpy(states), torch.from_numpy(actions),
                         torch.from_numpy(timesteps), torch.from_numpy(mask)).numpy()
    got = lite.action_logits(rtg, states, actions, timesteps, mask)
    assert got.shape == (B, K, concepts)
    assert np.abs(got - expected)[mask.astype(bool)].max() <= TOLERANCE
    last, _ = lite.select_action(rtg, states, actions, timesteps, mask)
    assert np.array_equal(last, expected[:, -1].argmax(axis=1))


def test_an_export_with_the_linear_state_token_still_loads_and_matches(tmp_path):
    """A model exported before the summary token: no "state_token" key, embed_state over all 4 x C numbers."""
    concepts = 5
    torch.manual_seed(0)
    old = DecisionTransformer(DTConfig(state_dim=F * concepts, action_dim=concepts, hidden_dim=16, num_layers=1,
                                       num_heads=2, context_length=K, concept_features=F, concept_head_dim=8,
                                       return_scale=2.0)).eval()
    lite = export(old, tmp_path)
    written = json.loads((tmp_path / "dt_lite_config.json").read_text())
    assert "state_token" not in written  # the key set of earlier exports
    assert lite.state_summary is None and not lite.scores_unseen_concepts
    assert lite.embed_state_w.shape == (F * concepts, 16)
    reloaded = DecisionTransformer.from_checkpoint(tmp_path / "dt_model.pt")
    assert reloaded.state_summary is None
    rtg, states, actions, timesteps, mask = inputs(np.random.default_rng(1), 3, K, concepts, True)
    with torch.no_grad():
        expected = reloaded(*(torch.from_numpy(a) for a in (rtg, states, actions, timesteps, mask))).numpy()
    got = lite.action_logits(rtg, states, actions, timesteps, mask)
    assert np.abs(got - expected)[mask.astype(bool)].max() <= TOLERANCE
    with pytest.raises(ValueError, match="states must be"):  # no scoring beyond the trained concepts
        lite.select_action(rtg, encoder_like_states(np.random.default_rng(2), (3, K), concepts + 1), actions,
                           timesteps, mask)


@pytest.mark.parametrize("config, expected", [
    ({"state_token": "summary", "concept_features": F}, True),
    ({"state_token": "linear", "concept_features": F}, False),  # the linear token grows with the concepts
    ({"concept_features": F}, False),  # an export from before the summary token
    ({"state_token": "summary", "concept_features": 0}, False),  # no concept head
    ({"state_token": "summary", "concept_features": None}, False),  # a registry row without the key
    (None, False),
])
def test_only_the_summary_token_with_the_concept_head_scores_concepts_added_after_training(config, expected):
    assert scores_unseen_concepts(config) is expected


@pytest.mark.parametrize("state_token", ["summary", "linear"])
def test_dtlite_scores_concepts_added_after_training_exactly_when_its_config_says_so(tmp_path, state_token):
    lite = export(summary_model(4, state_token=state_token), tmp_path)
    assert lite.scores_unseen_concepts is scores_unseen_concepts(lite.config) is (state_token == "summary")


def test_a_concept_added_after_training_is_scored_from_its_features(tmp_path):
    concepts = 20
    lite = export(summary_model(concepts), tmp_path)
    rng = np.random.default_rng(5)
    rtg, states, actions, timesteps, mask = inputs(rng, 2, K, concepts, False)
    extra = encoder_like_states(rng, (2, K), 2)
    wide = np.concatenate([states, extra], axis=-1)  # concepts 20 and 21 were added after training
    actions[:, 1] = concepts + 1  # the learner has already practised an added concept
    logits = lite.action_logits(rtg, wide, actions, timesteps, mask)
    assert logits.shape == (2, K, concepts + 2) and np.isfinite(logits).all()

    # An added concept with a trained concept's features gets that concept's concept-head score and the linear
    # head's average (the model knows nothing else of it).
    wide[:, -1, -F:] = wide[:, -1, 3 * F:4 * F]
    h = _last_state_token(lite, rtg, wide, actions, timesteps)
    logits = lite.action_logits(rtg, wide, actions, timesteps, mask)[:, -1]
    linear_3 = h @ lite.predict_action_w[:, 3] + lite.predict_action_b[3]
    typical = h @ lite.predict_action_w.mean(axis=1) + lite.predict_action_b.mean()
    assert np.allclose(logits[:, -1] - typical, logits[:, 3] - linear_3, atol=1e-4)

    # Its score moves with its own features: practising it again pushes its recall up.
    action, probs = lite.select_action(rtg, wide, actions, timesteps, mask)
    assert probs.shape == (2, concepts + 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    changed = wide.copy()
    changed[:, -1, -F:] = [0.99, 0.0, 0.9, 0.9]
    assert not np.allclose(lite.action_logits(rtg, changed, actions, timesteps, mask)[:, -1, -1], logits[:, -1])
    chosen, _ = lite.select_action(rtg, wide, actions, timesteps, mask, candidates=[concepts + 1])
    assert (chosen == concepts + 1).all()


def _last_state_token(lite: DTLite, rtg, states, actions, timesteps) -> np.ndarray:
    """The last state token's output h [B, H], by the same path select_action takes."""
    captured = {}
    original = lite.concept_head.__call__

    class Spy:
        concept_features = lite.concept_head.concept_features

        def __call__(self, h, s):
            captured["h"] = h
            return original(h, s)

    lite.concept_head, real = Spy(), lite.concept_head
    try:
        lite.select_action(rtg, states, actions, timesteps)
    finally:
        lite.concept_head = real
    return captured["h"]
