"""The PyTorch Decision Transformer: shapes, causality, padding and checkpoint loading."""
from __future__ import annotations

import pytest
import torch

from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig

S, A = 6, 5


def small_model(**overrides) -> DecisionTransformer:
    torch.manual_seed(0)
    config = DTConfig(state_dim=S, action_dim=A, hidden_dim=32, num_layers=2, num_heads=4, context_length=8,
                      max_timestep=64, return_scale=10.0, **overrides)
    return DecisionTransformer(config).eval()


def random_inputs(B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, generator=g) * 10, torch.randn(B, T, S, generator=g),
            torch.randint(0, A, (B, T), generator=g), torch.arange(T).repeat(B, 1) + 3)


def test_forward_returns_float32_logits_per_timestep():
    model = small_model()
    logits = model(*random_inputs(3, 8))
    assert logits.shape == (3, 8, A) and logits.dtype == torch.float32


def test_logits_at_t_ignore_the_action_at_t_and_everything_later():
    model = small_model()
    rtg, states, actions, timesteps = random_inputs(2, 8)
    before = model(rtg, states, actions, timesteps)
    actions2, states2 = actions.clone(), states.clone()
    actions2[:, 4:] = (actions2[:, 4:] + 1) % A
    states2[:, 5:] += 1.0
    after = model(rtg, states2, actions2, timesteps)
    torch.testing.assert_close(after[:, :5], before[:, :5])
    assert not torch.allclose(after[:, 5:], before[:, 5:])


def test_padded_positions_do_not_influence_valid_ones():
    model = small_model()
    rtg, states, actions, timesteps = random_inputs(2, 8)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, :8] = 0  # a fully padded row must stay finite
    out = model(rtg, states, actions, timesteps, mask)
    rtg2, states2, actions2 = rtg.clone(), states.clone(), actions.clone()
    rtg2[0, :3], states2[0, :3], actions2[0, :3] = 99.0, -5.0, (actions2[0, :3] + 2) % A
    out2 = model(rtg2, states2, actions2, timesteps, mask)
    assert torch.isfinite(out).all() and torch.isfinite(out2).all()
    torch.testing.assert_close(out2[0, 3:], out[0, 3:])
    # and a left-padded window gives the same answer as the unpadded short one
    short = model(rtg[:1, 3:], states[:1, 3:], actions[:1, 3:], timesteps[:1, 3:])
    torch.testing.assert_close(out[0, 3:], short[0], atol=1e-5, rtol=1e-5)


def test_timesteps_beyond_max_timestep_are_clamped():
    model = small_model()
    rtg, states, actions, timesteps = random_inputs(1, 4)
    high = model(rtg, states, actions, timesteps + 1000)
    clamped = model(rtg, states, actions, torch.full_like(timesteps, 63))
    torch.testing.assert_close(high, clamped)


def test_sequence_longer_than_context_is_refused():
    model = small_model()
    with pytest.raises(ValueError, match="context_length"):
        model(*random_inputs(1, 9))


def test_config_refuses_heads_that_do_not_divide_hidden():
    with pytest.raises(ValueError, match="num_heads"):
        DTConfig(state_dim=S, action_dim=A, hidden_dim=30, num_heads=4)


def test_from_checkpoint_restores_the_same_model_in_eval_mode(tmp_path):
    model = small_model()
    export_artifacts(model=model, output_dir=tmp_path, concept_keys=list("abcde"), encoder={}, target_return=1.0)
    loaded = DecisionTransformer.from_checkpoint(tmp_path / "dt_model.pt")
    assert not loaded.training and loaded.config == model.config
    inputs = random_inputs(2, 8)
    torch.testing.assert_close(loaded(*inputs), model(*inputs))
    from_bytes = DecisionTransformer.from_checkpoint((tmp_path / "dt_model.pt").read_bytes())
    torch.testing.assert_close(from_bytes(*inputs), model(*inputs))


def test_concept_head_config_must_match_the_state_layout():
    with pytest.raises(ValueError, match="DTConfig.state_dim 6 must be concept_features 2 x action_dim 5"):
        DTConfig(state_dim=S, action_dim=A, concept_features=2)
    with pytest.raises(ValueError, match="DTConfig.concept_features must be an integer >= 0"):
        DTConfig(state_dim=10, action_dim=A, concept_features=-1)
    assert DecisionTransformer(DTConfig(state_dim=10, action_dim=A, hidden_dim=32, num_heads=4)).concept_head is None


def test_concept_head_scores_each_concept_with_shared_weights():
    """Permuting the concepts' feature groups permutes their scores: one function of (h, x_c) for every c."""
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=2 * A, action_dim=A, hidden_dim=32, num_heads=4,
                                         concept_features=2, concept_head_dim=8)).eval()
    h = torch.randn(3, 4, 32)
    states = torch.randn(3, 4, A, 2)
    order = torch.tensor([3, 0, 4, 1, 2])
    scores = model.concept_head(h, states.reshape(3, 4, -1))
    permuted = model.concept_head(h, states[:, :, order].reshape(3, 4, -1))
    torch.testing.assert_close(permuted, scores[:, :, order])
    assert scores.shape == (3, 4, A) and scores.std() > 0


def test_concept_head_changes_the_logits_and_survives_the_checkpoint(tmp_path):
    config = DTConfig(state_dim=2 * A, action_dim=A, hidden_dim=32, num_layers=2, num_heads=4, context_length=8,
                      max_timestep=64, return_scale=10.0, concept_features=2, concept_head_dim=8)
    torch.manual_seed(0)
    model = DecisionTransformer(config).eval()
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 8, generator=g), torch.randn(2, 8, 2 * A, generator=g),
              torch.randint(0, A, (2, 8), generator=g), torch.arange(8).repeat(2, 1))
    with torch.no_grad():
        with_head = model(*inputs)
        head = model.concept_head
        model.concept_head = None
        without = model(*inputs)
        model.concept_head = head
    assert (with_head - without).abs().max() > 0
    export_artifacts(model=model, output_dir=tmp_path, concept_keys=list("abcde"), encoder={}, target_return=1.0)
    loaded = DecisionTransformer.from_checkpoint(tmp_path / "dt_model.pt")
    assert loaded.config.concept_features == 2
    torch.testing.assert_close(loaded(*inputs), model(*inputs))


@pytest.mark.parametrize("features,concepts,block_cells", [(3, 5, 1 << 18), (3, 37, 300), (4, 37, 300),
                                                             (4, 6, 1 << 18)])
def test_the_blocked_concept_head_equals_eager_autograd(monkeypatch, features, concepts, block_cells):
    """ConceptScores (the CPU path, in blocks; with 4 features the never-reviewed vector scored once per row) gives
    the eager formula's scores and the gradients autograd gives it, for the state token and all three weights;
    several blocks (block_cells 300) and one."""
    from training.rl import dt
    from training.rl.model_config import UNREVIEWED_FEATURES

    monkeypatch.setattr(dt, "CONCEPT_BLOCK_CELLS", block_cells)
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=features * concepts, action_dim=concepts, hidden_dim=16,
                                         num_heads=2, concept_features=features, concept_head_dim=8))
    head = model.concept_head
    g = torch.Generator().manual_seed(2)
    h = torch.randn(4, 5, 16, generator=g, requires_grad=True)
    x = torch.randn(4, 5, concepts, features, generator=g)
    if features == 4:  # about half the concepts never reviewed, as the encoder gives them
        x[torch.rand(4, 5, concepts, generator=g) < 0.5] = torch.tensor(UNREVIEWED_FEATURES)
    states = x.reshape(4, 5, -1)
    weight = torch.randn(4, 5, concepts, generator=g)

    def eager(h):
        z = head.c_state(h).unsqueeze(2) + head.c_concept(x)
        return head.c_out(head.gelu(z)).squeeze(-1)

    results = []
    for run in (eager, lambda h: head(h, states)):
        model.zero_grad()
        h.grad = None
        scores = run(h)
        (scores * weight).sum().backward()
        results.append((scores.detach(), h.grad.clone(), *(p.grad.clone() for p in head.parameters())))
    assert results[1][0].shape == (4, 5, concepts)
    for expected, got in zip(*results):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_encoder_gives_unreviewed_concepts_the_vector_the_concept_head_shares():
    """UNREVIEWED_FEATURES is a speed hint only if it is what the encoder gives a concept never reviewed."""
    import numpy as np

    from training.rl.encoder import EncoderConfig, StateEncoder
    from training.rl.model_config import UNREVIEWED_FEATURES

    encoder = StateEncoder(EncoderConfig(num_concepts=3))
    states = encoder.encode(encoder.init_memory(2), np.array([0.0, 1e9]))
    assert np.array_equal(states.reshape(2, 3, -1), np.broadcast_to(np.float32(UNREVIEWED_FEATURES), (2, 3, 4)))


def test_the_dropout_mask_keeps_each_element_with_its_probability_and_repeats_for_a_seed():
    from training.rl.dt import dropout_mask

    torch.manual_seed(5)
    mask = dropout_mask((1000, 1000), 3277, device="cpu")
    torch.manual_seed(5)
    again = dropout_mask((1000, 1000), 3277, device="cpu")
    assert mask.shape == (1000, 1000) and mask.dtype == torch.bool and torch.equal(mask, again)
    keep = 1 - 3277 / 32768  # 0.899994
    sd = (keep * (1 - keep) / mask.numel()) ** 0.5
    assert abs(mask.float().mean().item() - keep) < 5 * sd
    # every one of the four elements a 64-bit draw gives is uniform, including the one with the draw's top bit
    by_slot = mask.reshape(-1, 4).float().mean(0)
    assert all(abs(v - keep) < 5 * sd * 2 for v in by_slot.tolist())
    assert dropout_mask((7,), 0, device="cpu").all()
    assert dropout_mask((100_000,), 32767, device="cpu").float().mean() < 0.001  # keeps 1 / 32768
    for bad in (-1, 32768):
        with pytest.raises(ValueError, match="threshold"):
            dropout_mask((3,), bad, device="cpu")


def test_dropout_keeps_the_expectation_and_is_the_identity_in_eval_mode():
    from training.rl.dt import Dropout

    drop = Dropout(0.1)
    assert (drop.threshold, drop.scale) == (3277, 32768 / 29491)
    x = torch.ones(2000, 500)
    torch.manual_seed(0)
    y = drop.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 32768 / 29491))
    assert abs(y.mean().item() - 1.0) < 0.003  # E[y] = x: 5 standard deviations of the mean
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x
    assert Dropout(0.99999).threshold == 32767  # at most 1 - 2**-15
    x.requires_grad_(True)
    torch.manual_seed(1)
    out = drop.train()(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() * (32768 / 29491))  # the gradient flows through kept elements
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout probability"):
            Dropout(p)


@pytest.mark.parametrize("padded", [False, True])
def test_training_attention_by_hand_equals_scaled_dot_product_attention(padded):
    # in training on the CPU with dropout > 0 the attention is computed by hand (its weights take Dropout's mask);
    # without the masks it is the function SDPA computes in eval mode
    from training.rl.dt import CausalSelfAttention, token_attention_mask

    torch.manual_seed(0)
    config = DTConfig(state_dim=S, action_dim=A, hidden_dim=32, num_layers=2, num_heads=4, context_length=8,
                      max_timestep=64, dropout=0.1)
    attention = CausalSelfAttention(config)
    attention.attn_dropout, attention.resid_dropout = torch.nn.Identity(), torch.nn.Identity()
    x = torch.randn(3, 24, 32)
    valid = torch.ones(3, 8, dtype=torch.int64)
    if padded:
        valid[0, :3] = 0
    mask = token_attention_mask(valid) if padded else None
    by_hand = attention.train()(x, mask)
    sdpa = attention.eval()(x, mask)
    torch.testing.assert_close(by_hand, sdpa, atol=1e-6, rtol=1e-5)


def test_a_training_step_with_dropout_is_seeded():
    model = small_model(dropout=0.1).train()
    inputs = random_inputs(2, 8)
    torch.manual_seed(3)
    first = model(*inputs)
    torch.manual_seed(3)
    again = model(*inputs)
    torch.manual_seed(4)
    other = model(*inputs)
    assert torch.equal(first, again) and not torch.equal(first, other)
