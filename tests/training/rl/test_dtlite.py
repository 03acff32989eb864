"""DTLite equals the PyTorch Decision Transformer (max abs difference <= 1e-5, within the contract's 1e-4) and
chooses actions as documented."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite
from training.rl.trainer import TrainConfig, train
from training.rl.trajectories import TrajectoryDataset

A, K = 7, 10
F = 2  # features per concept for the concept head
S = F * A
TOLERANCE = 1e-5


def export(model: DecisionTransformer, directory) -> DTLite:
    export_artifacts(model=model, output_dir=directory, concept_keys=[f"c{i}" for i in range(A)], encoder={},
                     target_return=2.0)
    return DTLite.load(directory / "dt_lite_weights.npz", directory / "dt_lite_config.json")


def random_model(**config) -> DecisionTransformer:
    """A random model of the original Decision Transformer's size (hidden 128, 4 blocks, 4 heads: every export
    before 2026-12-07 has it, and more blocks than today's default of 2 exercise more of DTLite), unless ``config``
    says otherwise."""
    torch.manual_seed(1)
    config = {"hidden_dim": 128, "num_layers": 4, "num_heads": 4, **config}
    model = DecisionTransformer(DTConfig(state_dim=S, action_dim=A, context_length=K, max_timestep=200,
                                         return_scale=4.0, **config)).eval()
    with torch.no_grad():  # larger than init-sized weights, so that every block matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def random_pair(tmp_path_factory) -> tuple[DecisionTransformer, DTLite]:
    """The original linear action head only (as models exported before the concept head)."""
    model = random_model()
    return model, export(model, tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def random_concept_pair(tmp_path_factory) -> tuple[DecisionTransformer, DTLite]:
    model = random_model(concept_features=F, concept_head_dim=8)
    assert model.concept_head is not None
    return model, export(model, tmp_path_factory.mktemp("random_concept"))


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory) -> tuple[DecisionTransformer, DTLite]:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 25, size=8)
    n = int(lengths.sum())
    rewards = rng.random(n).astype(np.float32)
    dataset = TrajectoryDataset(
        states=rng.normal(size=(n, S)).astype(np.float32), actions=rng.integers(0, A, n), rewards=rewards,
        returns_to_go=rewards * 5, timesteps=np.concatenate([np.arange(k) for k in lengths]),
        episode_starts=np.concatenate([[0], np.cumsum(lengths)]))
    result = train(dataset=dataset, model_config=DTConfig(state_dim=S, action_dim=A, hidden_dim=32, num_layers=2,
                                                          context_length=K, max_timestep=64, concept_features=F),
                   train_config=TrainConfig(epochs=1, batch_size=8, windows_per_epoch=40, learning_rate=1e-3))
    return result.model, export(result.model, tmp_path_factory.mktemp("trained"))


def inputs(B: int, T: int, *, padded: bool, seed: int = 0) -> dict[str, np.ndarray | None]:
    rng = np.random.default_rng(seed)
    mask = None
    if padded:
        mask = np.ones((B, T), np.int64)
        for b in range(B):
            mask[b, : rng.integers(0, T)] = 0  # left padding, sometimes none
    return {
        "returns_to_go": (rng.normal(size=(B, T)) * 3).astype(np.float32),
        "states": rng.normal(size=(B, T, S)).astype(np.float32),
        "actions": rng.integers(0, A, (B, T)),
        "timesteps": np.arange(T) + rng.integers(0, 150, (B, 1)),
        "attention_mask": mask,
    }


def torch_logits(model: DecisionTransformer, x: dict) -> np.ndarray:
    with torch.inference_mode():
        return model(*(None if v is None else torch.from_numpy(v) for v in x.values())).numpy()


@pytest.mark.parametrize("pair", ["random_pair", "random_concept_pair", pytest.param("trained_pair", marks=pytest.mark.trains)])
@pytest.mark.parametrize("B,T,padded", [(1, K, False), (1, K, True), (64, K, False), (64, K, True), (3, 4, True)])
def test_dtlite_logits_equal_pytorch(request, pair, B, T, padded):
    model, lite = request.getfixturevalue(pair)
    x = inputs(B, T, padded=padded)
    expected = torch_logits(model, x)
    got = lite.action_logits(**x)
    assert got.dtype == np.float32 and got.shape == (B, T, A)
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("pair", ["random_pair", "random_concept_pair", pytest.param("trained_pair", marks=pytest.mark.trains)])
@pytest.mark.parametrize("B,T,padded", [(1, K, False), (1, K, True), (64, K, False), (64, K, True), (2, 1, False),
                                        (5, 4, True)])
def test_select_action_fast_path_equals_the_full_last_position(request, pair, B, T, padded):
    model, lite = request.getfixturevalue(pair)
    x = inputs(B, T, padded=padded, seed=1)
    last = torch_logits(model, x)[:, -1]
    action, probs = lite.select_action(**x)
    assert action.dtype == np.int64 and probs.dtype == np.float32 and probs.shape == (B, A)
    np.testing.assert_array_equal(action, last.argmax(axis=1))
    z = np.exp(last - last.max(axis=1, keepdims=True))
    assert np.abs(probs - z / z.sum(axis=1, keepdims=True)).max() <= TOLERANCE


def test_the_unknown_current_action_is_not_read(random_pair):
    _, lite = random_pair
    x = inputs(2, K, padded=False)
    a1, p1 = lite.select_action(**x)
    x["actions"][:, -1] = (x["actions"][:, -1] + 3) % A
    a2, p2 = lite.select_action(**x)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(p1, p2)


def test_candidates_restrict_the_choice_and_the_probabilities(random_pair):
    _, lite = random_pair
    x = inputs(4, K, padded=True)
    action, probs = lite.select_action(**x, candidates=[1, 4])
    assert set(action) <= {1, 4}
    assert np.all(probs[:, [0, 2, 3, 5, 6]] == 0) and np.allclose(probs.sum(axis=1), 1, atol=1e-6)
    per_row = np.zeros((4, A), bool)
    per_row[np.arange(4), [0, 1, 2, 3]] = True
    action, _ = lite.select_action(**x, candidates=per_row)
    np.testing.assert_array_equal(action, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="no action"):
        lite.select_action(**x, candidates=np.zeros(A, bool))


def test_temperature_samples_reproducibly_within_top_k(random_pair):
    _, lite = random_pair
    x = inputs(64, K, padded=False)
    logits = lite.select_action(**x)[1]
    top2 = np.argsort(logits, axis=1)[:, -2:]
    a1, probs = lite.select_action(**x, temperature=5.0, top_k=2, rng=np.random.default_rng(3))
    a2, _ = lite.select_action(**x, temperature=5.0, top_k=2, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a1, a2)
    assert all(a in row for a, row in zip(a1, top2))
    assert np.all((probs > 0).sum(axis=1) == 2)
    greedy = lite.select_action(**x)[0]
    assert (a1 != greedy).any()  # a high temperature over two actions does not always pick the argmax


def test_wrong_input_shapes_are_refused_with_the_name(random_pair):
    _, lite = random_pair
    x = inputs(2, K, padded=False)
    x["states"] = x["states"][:, :, :-1]
    with pytest.raises(ValueError, match="states"):
        lite.action_logits(**x)


def test_the_architecture_rules_are_the_same_for_dtconfig_dtlite_and_the_artifact_check():
    """One rule set (training.rl.model_config): a config DTConfig refuses, DTLite and check_config refuse alike."""
    from training.rl.artifacts import ArtifactError, check_config
    from training.rl.dt import DTConfig
    from training.rl.dtlite import DTLite

    bad = {"state_dim": 8, "action_dim": 4, "hidden_dim": 10, "num_layers": 1, "num_heads": 4, "context_length": 2,
           "max_timestep": 8}  # 10 is not divisible by 4
    message = "hidden_dim 10 must be divisible by num_heads 4"
    with pytest.raises(ValueError, match=f"DTConfig.{message}"):
        DTConfig(**bad)
    with pytest.raises(ValueError, match=message):
        DTLite({}, bad)
    full = {**bad, "temperature": 1.0, "top_k": None, "target_return": 1.0, "return_scale": 1.0,
            "concept_keys": list("abcd"), "encoder": {}, "format_version": 1, "weights_sha256": "0" * 64}
    with pytest.raises(ArtifactError, match=f"dt_lite_config.json: {message}"):
        check_config(full)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.uint64])
def test_timesteps_of_any_integer_type_give_the_same_logits(random_pair, dtype):
    # the clamp to max_timestep - 1 must not overflow a narrow type (np.clip did not; a bare Python bound would)
    _, lite = random_pair
    rng = np.random.default_rng(4)
    B, T = 2, K
    args = (rng.normal(size=(B, T)).astype(np.float32), rng.random((B, T, S), dtype=np.float32),
            rng.integers(0, A, (B, T)))
    steps = np.sort(rng.integers(0, 100, (B, T)), axis=1)
    np.testing.assert_array_equal(lite.action_logits(*args, steps.astype(dtype)), lite.action_logits(*args, steps))
