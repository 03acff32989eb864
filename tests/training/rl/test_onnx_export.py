"""dt_policy.onnx: written at export when `onnx` is installed, and ONNX Runtime's logits equal DTLite's (<= 1e-4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.rl import onnx_export
from training.rl.artifacts import ONNX_FILE, sha256_hex
from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite

A, K, F = 6, 5, 4  # concepts, context length, features per concept (the summary token reads 4)
TOLERANCE = 1e-4


def random_model(**config) -> DecisionTransformer:
    torch.manual_seed(3)
    model = DecisionTransformer(DTConfig(state_dim=F * A, action_dim=A, context_length=K, max_timestep=50,
                                         hidden_dim=32, num_layers=2, num_heads=2, return_scale=4.0, **config)).eval()
    with torch.no_grad():  # larger than init-sized weights, so that every block matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def export(model, directory, **kwargs) -> dict[str, str]:
    return export_artifacts(model=model, output_dir=directory, concept_keys=[f"c{i}" for i in range(A)], encoder={},
                            target_return=2.0, **kwargs)


@pytest.mark.parametrize("config", [
    {},  # the original linear state token and action head
    {"concept_features": F, "concept_head_dim": 8},
    {"concept_features": F, "concept_head_dim": 8, "state_token": "summary"},  # what training exports
    # local attention (train_crl_policy --attention-window): the window is in the graph's mask
    {"concept_features": F, "concept_head_dim": 8, "state_token": "summary", "attention_window": 4},
], ids=["linear", "concept_head", "summary", "windowed"])
def test_onnx_runtime_equals_dtlite_for_every_length_and_padding(tmp_path, config):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = random_model(**config)
    shas = export(model, tmp_path)
    graph = (tmp_path / ONNX_FILE).read_bytes()
    assert shas[ONNX_FILE] == sha256_hex(graph)
    lite = DTLite.load(tmp_path / "dt_lite_weights.npz", tmp_path / "dt_lite_config.json")
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for B, T in [(1, 1), (1, K), (3, 2), (4, K)]:
        states = rng.random((B, T, F * A), dtype=np.float32)
        states[..., 2::F] = rng.integers(0, 3, (B, T, A))  # some concepts never reviewed (the summary's counts)
        inputs = {
            "returns_to_go": rng.normal(size=(B, T)).astype(np.float32), "states": states,
            "actions": rng.integers(0, A, (B, T)), "timesteps": np.sort(rng.integers(0, 60, (B, T)), axis=1),
            "attention_mask": np.ones((B, T), np.int64),
        }
        inputs["attention_mask"][0, : T // 2] = 0  # left padding in the first row
        (onnx_logits,) = session.run(None, inputs)
        lite_logits = lite.action_logits(*inputs.values())
        valid = inputs["attention_mask"].astype(bool)
        assert onnx_logits.shape == (B, T, A)
        np.testing.assert_allclose(onnx_logits[valid], lite_logits[valid], atol=TOLERANCE, rtol=0)


def test_no_onnx_file_without_the_package_or_when_turned_off(tmp_path, monkeypatch):
    model = random_model()
    assert ONNX_FILE not in export(model, tmp_path / "off", onnx=False)
    assert not (tmp_path / "off" / ONNX_FILE).exists()
    monkeypatch.setattr("training.rl.checkpoint.onnx_available", lambda: False)
    assert ONNX_FILE not in export(model, tmp_path / "missing")
    assert not (tmp_path / "missing" / ONNX_FILE).exists()


def test_the_graph_keeps_a_training_model_in_training_mode(tmp_path):
    pytest.importorskip("onnx")
    model = random_model().train()
    onnx_export.onnx_bytes(model)
    assert model.training
