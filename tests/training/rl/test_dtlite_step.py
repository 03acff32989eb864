"""DTLite's per-step path (prefill, extend, step) on a model with local attention equals the full forward on the
last context_length timesteps, and DTLite's windowed model equals PyTorch's (<= 1e-5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite
from training.rl.model_config import max_attention_window

A, K, F, LAYERS = 5, 6, 4, 2  # concepts, context length, features per concept (the summary token's), blocks
S = F * A
WIDEST = max_attention_window(context_length=K, num_layers=LAYERS)  # (3 x 6 - 2) // 2 + 1 = 9
TOLERANCE = 1e-5


def random_model(window: int | None, **config) -> DecisionTransformer:
    torch.manual_seed(5)
    model = DecisionTransformer(DTConfig(
        state_dim=S, action_dim=A, context_length=K, max_timestep=40, hidden_dim=32, num_layers=LAYERS, num_heads=2,
        return_scale=4.0, attention_window=window, **config)).eval()
    with torch.no_grad():  # larger than init-sized weights, so that every block matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def export(model: DecisionTransformer, directory) -> DTLite:
    export_artifacts(model=model, output_dir=directory, concept_keys=[f"c{i}" for i in range(A)], encoder={},
                     target_return=2.0, onnx=False)
    return DTLite.load(directory / "dt_lite_weights.npz", directory / "dt_lite_config.json")


CONFIGS = {
    "summary": {"concept_features": F, "concept_head_dim": 8, "state_token": "summary"},  # what training exports
    "linear": {},
}


@pytest.fixture(scope="module", params=[(WIDEST, "summary"), (3, "summary"), (1, "summary"), (WIDEST, "linear")],
                ids=lambda p: f"W{p[0]}-{p[1]}")
def pair(request, tmp_path_factory) -> tuple[DecisionTransformer, DTLite]:
    window, kind = request.param
    model = random_model(window, **CONFIGS[kind])
    return model, export(model, tmp_path_factory.mktemp("step"))


def history(B: int, N: int, seed: int = 0) -> dict[str, np.ndarray]:
    """B learners' N-step sequences (timesteps 0..N-1), some concepts never reviewed (the summary's counts)."""
    rng = np.random.default_rng(seed)
    states = rng.random((B, N, S), dtype=np.float32)
    states[..., 2::F] = rng.integers(0, 3, (B, N, A))
    return {"returns_to_go": (rng.normal(size=(B, N)) * 3).astype(np.float32), "states": states,
            "actions": rng.integers(0, A, (B, N)), "timesteps": np.tile(np.arange(N), (B, 1))}


def context(h: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """What serving passes after t steps: the last min(t, K) of them."""
    return {name: value[:, max(0, t - K):t] for name, value in h.items()}


def full_last_logits(lite: DTLite, h: dict[str, np.ndarray], t: int) -> np.ndarray:
    return lite.action_logits(**context(h, t))[:, -1]


def torch_last_logits(model: DecisionTransformer, h: dict[str, np.ndarray], t: int) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(v) for v in context(h, t).values()))[:, -1].numpy()


def test_the_window_is_checked_against_the_context_and_the_layers():
    assert WIDEST == 9
    DTConfig(state_dim=S, action_dim=A, context_length=K, num_layers=LAYERS, attention_window=WIDEST)
    for bad in (0, WIDEST + 1, 2.0, True):
        with pytest.raises(ValueError, match="attention_window must be null or an integer from 1 to 9"):
            DTConfig(state_dim=S, action_dim=A, context_length=K, num_layers=LAYERS, attention_window=bad)


@pytest.mark.parametrize("padded", [False, True])
def test_windowed_dtlite_equals_pytorch_on_the_full_path(pair, padded):
    model, lite = pair
    rng = np.random.default_rng(1)
    for B, T in [(1, 1), (1, K), (3, 4), (4, K)]:
        x = history(B, T, seed=T)
        if padded:
            x["attention_mask"] = (np.arange(T) >= rng.integers(0, T, (B, 1))).astype(np.int64)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(v) for v in x.values())).numpy()
        got = lite.action_logits(**x)
        valid = x["attention_mask"].astype(bool) if padded else np.ones((B, T), bool)
        np.testing.assert_allclose(got[valid], expected[valid], atol=TOLERANCE, rtol=0)
        _, probs = lite.select_action(**x)  # the last-row path is the same function
        np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(expected[:, -1]), -1).numpy(), atol=1e-5)


@pytest.mark.parametrize("start", [1, 2, K - 1, K, K + 3])
def test_step_equals_the_full_forward_for_every_length_up_to_and_past_the_context(pair, start):
    """Prefill on the first `start` steps (the last K of them), then one step at a time to 3K + 2 steps: every
    step's logits equal DTLite's and PyTorch's full forward on the last K steps."""
    model, lite = pair
    N = 3 * K + 2
    h = history(2, N, seed=start)
    state = lite.prefill(**context(h, start))
    np.testing.assert_allclose(state.logits, full_last_logits(lite, h, start), atol=TOLERANCE, rtol=0)
    for t in range(start + 1, N + 1):
        i = t - 1  # the new step's index; h["actions"][:, i - 1] was taken at the previous state
        args = (h["actions"][:, i - 1], h["returns_to_go"][:, i], h["states"][:, i], h["timesteps"][:, i])
        only = lite.step(state, *args, keep_cache=False)  # the logits alone: nothing kept, the same logits
        assert only.keys == only.values == ()
        state = lite.step(state, *args)
        np.testing.assert_array_equal(only.logits, state.logits)
        assert state.cached_tokens <= lite.attention_window - 1
        np.testing.assert_allclose(state.logits, full_last_logits(lite, h, t), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(state.logits, torch_last_logits(model, h, t), atol=TOLERANCE, rtol=0)


def test_extend_by_several_steps_and_without_logits_equals_the_full_forward(pair):
    _, lite = pair
    N = 3 * K
    h = history(3, N, seed=11)
    state = lite.prefill(**context(h, 2))

    def new(t0: int, t1: int) -> tuple[np.ndarray, ...]:  # steps t0..t1-1 after a state at step t0 - 1
        return (h["actions"][:, t0 - 1:t1 - 1], h["returns_to_go"][:, t0:t1], h["states"][:, t0:t1],
                h["timesteps"][:, t0:t1])

    three = lite.extend(state, *new(2, 5))
    np.testing.assert_allclose(three.logits, full_last_logits(lite, h, 5), atol=TOLERANCE, rtol=0)
    quiet = lite.extend(three, *new(5, 12), logits=False)  # reviews without a recommendation
    assert quiet.logits is None
    after = lite.step(quiet, *(a[:, 0] for a in new(12, 13)))
    np.testing.assert_allclose(after.logits, full_last_logits(lite, h, 13), atol=TOLERANCE, rtol=0)
    again = lite.extend(three, *new(5, 13))  # the earlier state is unchanged: it can be stepped from again
    np.testing.assert_allclose(again.logits, after.logits, atol=TOLERANCE, rtol=0)


def test_a_padded_batch_prefill_steps_like_each_learner_alone(pair):
    """Learners with different history lengths in one prefill (left padding), then stepped together."""
    _, lite = pair
    N = 2 * K + 2  # the longest learner steps from K to 2K + 2 steps
    h = history(3, N, seed=4)
    lengths = [1, 3, K]  # steps each learner has at the prefill
    T = max(lengths)
    x = {name: np.zeros_like(value[:, :T]) for name, value in h.items()}
    mask = np.zeros((3, T), np.int64)
    for b, n in enumerate(lengths):  # left padding; every row's timesteps are its own
        for name in x:
            x[name][b, T - n:] = h[name][b, :n]
        mask[b, T - n:] = 1
    state = lite.prefill(**x, attention_mask=mask)
    for b, n in enumerate(lengths):
        one = {name: value[b:b + 1] for name, value in h.items()}
        np.testing.assert_allclose(state.logits[b], full_last_logits(lite, one, n)[0], atol=TOLERANCE, rtol=0)
    offsets = np.array(lengths)
    for k in range(K + 2):  # every learner one more step
        i = offsets + k
        rows = np.arange(3)
        state = lite.step(state, h["actions"][rows, i - 1], h["returns_to_go"][rows, i], h["states"][rows, i],
                          h["timesteps"][rows, i])
        for b in rows:
            one = {name: value[b:b + 1] for name, value in h.items()}
            np.testing.assert_allclose(state.logits[b], full_last_logits(lite, one, i[b] + 1)[0], atol=TOLERANCE,
                                       rtol=0)


def test_the_per_step_path_needs_a_window_and_refuses_bad_inputs(tmp_path, pair):
    full = export(random_model(None), tmp_path)
    h = history(1, 3)
    with pytest.raises(ValueError, match="needs a model trained with attention_window"):
        full.prefill(**h)
    _, lite = pair
    state = lite.prefill(**h)
    with pytest.raises(ValueError, match="actions must lie in"):
        lite.step(state, np.array([A]), np.array([1.0]), h["states"][:, 0], np.array([3]))
    with pytest.raises(ValueError, match="states must be"):
        lite.step(state, np.array([0]), np.array([1.0]), h["states"][:, 0, :3], np.array([3]))
    with pytest.raises(ValueError, match="returns_to_go must be"):
        lite.extend(state, np.zeros((2, 1), np.int64), np.zeros((2, 1)), np.zeros((2, 1, S)), np.zeros((2, 1), int))


def test_the_bound_is_tight_one_token_wider_and_a_step_goes_stale(monkeypatch):
    """With W = WIDEST + 1 the last state token of a full context reaches past its start: the full forward on the
    last K steps then differs from the step path (which remembers what slid out), so the bound cannot be wider."""
    import training.rl.dt as dt
    import training.rl.dtlite as dtlite

    monkeypatch.setattr(dt, "check_model_config", lambda config: None)
    monkeypatch.setattr(dtlite, "check_model_config", lambda config: None)
    model = random_model(WIDEST + 1, **CONFIGS["summary"])
    config = {**model.checkpoint_config(), "concept_keys": [f"c{i}" for i in range(A)]}
    lite = dtlite.DTLite({k: v.numpy() for k, v in model.state_dict().items()}, config)
    N = 2 * K
    h = history(1, N, seed=2)
    state = lite.prefill(**context(h, K))
    for i in range(K, N):
        state = lite.step(state, h["actions"][:, i - 1], h["returns_to_go"][:, i], h["states"][:, i],
                          h["timesteps"][:, i])
    assert np.abs(state.logits - full_last_logits(lite, h, N)).max() > 10 * TOLERANCE


def test_the_cache_join_keeps_a_contiguous_window_only():
    from training.rl.dtlite import _kept

    past = (np.arange(2 * 3, dtype=np.float32).reshape(1, 1, 2, 3), np.zeros((1, 1, 3, 2), np.float32))
    new = (np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 2, 2), np.float32))
    keys, values = _kept(past, new, slice(1, 5))
    assert keys.shape == (1, 1, 2, 4) and values.shape == (1, 1, 4, 2)
    np.testing.assert_array_equal(keys, np.concatenate(past[:1] + new[:1], axis=3)[..., 1:5])
    with pytest.raises(ValueError, match="contiguous"):
        _kept(past, new, slice(0, 5, 2))
