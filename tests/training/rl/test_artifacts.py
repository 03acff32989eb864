"""Policy artifacts: what export writes, and that tampered or inconsistent files are refused by name."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from training.rl.artifacts import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    REQUIRED_CONFIG_KEYS,
    WEIGHTS_FILE,
    ArtifactError,
    load_config,
    sha256_hex,
    verify_artifacts,
)
from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite

CONCEPTS = ["add", "sub", "mul", "div"]


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=9, action_dim=4, hidden_dim=16, num_layers=2, num_heads=2,
                                         context_length=5, max_timestep=32, return_scale=3.0))
    optimizer = torch.optim.AdamW(model.parameters())
    shas = export_artifacts(model=model, output_dir=tmp_path, concept_keys=CONCEPTS, encoder={"kind": "fsrs"},
                            target_return=1.5, top_k=3, optimizer_state=optimizer.state_dict(),
                            extra={"run": 7}, onnx=False)  # dt_policy.onnx: test_onnx_export.py
    return tmp_path, shas


def rewrite_weights(directory, change) -> None:
    """Apply `change` to the arrays and re-sign the npz in the config, as a careful forger would."""
    with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as npz:
        arrays = dict(npz)
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (directory / WEIGHTS_FILE).write_bytes(buffer.getvalue())
    config = json.loads((directory / CONFIG_FILE).read_text())
    config["weights_sha256"] = sha256_hex(buffer.getvalue())
    (directory / CONFIG_FILE).write_text(json.dumps(config))


def test_export_writes_three_files_with_their_sha256(exported):
    directory, shas = exported
    assert set(shas) == {CHECKPOINT_FILE, WEIGHTS_FILE, CONFIG_FILE}
    for name, sha in shas.items():
        assert sha256_hex((directory / name).read_bytes()) == sha
    config = json.loads((directory / CONFIG_FILE).read_text())
    assert set(REQUIRED_CONFIG_KEYS) <= set(config)
    assert config["concept_keys"] == CONCEPTS and config["encoder"] == {"kind": "fsrs"}
    assert config["top_k"] == 3 and config["target_return"] == 1.5 and config["format_version"] == 1
    assert config["weights_sha256"] == shas[WEIGHTS_FILE] and config["extra"] == {"run": 7}


def test_checkpoint_loads_with_weights_only(exported):
    directory, _ = exported
    checkpoint = torch.load(directory / CHECKPOINT_FILE, weights_only=True)
    assert {"model", "config", "optimizer"} <= set(checkpoint)
    assert checkpoint["config"]["state_dim"] == 9 and checkpoint["optimizer"]["state"] == {}


def test_weights_are_float32_plain_arrays(exported):
    directory, _ = exported
    with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as npz:
        assert npz.files and all(npz[name].dtype == np.float32 for name in npz.files)


def test_verify_accepts_a_directory_bytes_and_file_objects(exported):
    directory, shas = exported
    config, weights = verify_artifacts(directory=directory, expected_sha256=shas)
    assert config["action_dim"] == 4 and "predict_action.weight" in weights
    verify_artifacts(weights=(directory / WEIGHTS_FILE).read_bytes(), config=(directory / CONFIG_FILE).read_bytes())
    with open(directory / WEIGHTS_FILE, "rb") as w, open(directory / CONFIG_FILE, "rb") as c:
        w.read(10)  # a file object not at its start is read from the start
        lite = DTLite.load(w, c)
    assert lite.config["concept_keys"] == CONCEPTS


def test_changed_weight_bytes_are_refused_by_sha256(exported):
    directory, _ = exported
    data = bytearray((directory / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{WEIGHTS_FILE}: SHA-256 mismatch"):
        verify_artifacts(directory=directory)


def test_array_of_the_wrong_shape_is_refused_even_with_a_matching_sha(exported):
    directory, _ = exported
    rewrite_weights(directory, lambda a: a.update({"ln_f.weight": np.ones(17, np.float32)}))
    with pytest.raises(ArtifactError, match=r"'ln_f.weight' has shape \(17,\), expected \(16,\)"):
        verify_artifacts(directory=directory)


def test_missing_array_is_refused(exported):
    directory, _ = exported
    rewrite_weights(directory, lambda a: a.pop("blocks.1.mlp.c_fc.bias"))
    with pytest.raises(ArtifactError, match="missing array 'blocks.1.mlp.c_fc.bias'"):
        DTLite.load(directory / WEIGHTS_FILE, directory / CONFIG_FILE)


def test_wrong_dtype_is_refused(exported):
    directory, _ = exported
    rewrite_weights(directory, lambda a: a.update({"ln_f.bias": a["ln_f.bias"].astype(np.float64)}))
    with pytest.raises(ArtifactError, match="dtype float64, expected float32"):
        verify_artifacts(directory=directory)


def test_object_arrays_are_refused_without_unpickling(exported):
    directory, _ = exported
    rewrite_weights(directory, lambda a: a.update({"ln_f.bias": np.array([{"x": 1}], dtype=object)}))
    with pytest.raises(ArtifactError, match=WEIGHTS_FILE):
        verify_artifacts(directory=directory)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.pop("top_k"), "missing key 'top_k'"),
    (lambda c: c.update(format_version=2), "unknown format_version 2"),
    (lambda c: c.update(concept_keys=["add"]), "concept_keys has 1 entries but action_dim is 4"),
    (lambda c: c.update(hidden_dim="16"), "hidden_dim must be a positive integer"),
    (lambda c: c.update(num_layers=3), "missing array 'blocks.2.ln_1.weight'"),
])
def test_inconsistent_config_is_refused_by_name(exported, edit, message):
    directory, _ = exported
    config = json.loads((directory / CONFIG_FILE).read_text())
    edit(config)
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=message):
        verify_artifacts(directory=directory)


def test_load_config_refuses_invalid_json():
    with pytest.raises(ArtifactError, match=f"{CONFIG_FILE}: not valid JSON"):
        load_config(b"{not json")


def test_checkpoint_sha256_is_checked_when_expected(exported):
    directory, shas = exported
    (directory / CHECKPOINT_FILE).write_bytes(b"truncated")
    with pytest.raises(ArtifactError, match=f"{CHECKPOINT_FILE}: SHA-256 mismatch"):
        verify_artifacts(directory=directory, expected_sha256=shas)
    (directory / CHECKPOINT_FILE).unlink()
    with pytest.raises(ArtifactError, match=f"{CHECKPOINT_FILE}: file not found"):
        verify_artifacts(directory=directory, expected_sha256=shas)


@pytest.fixture
def exported_with_concept_head(tmp_path):
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=8, action_dim=4, hidden_dim=16, num_layers=1, num_heads=2,
                                         context_length=5, max_timestep=32, return_scale=3.0, concept_features=2,
                                         concept_head_dim=6))
    export_artifacts(model=model, output_dir=tmp_path, concept_keys=CONCEPTS, encoder={}, target_return=1.5)
    return tmp_path


def test_concept_head_is_described_in_the_config(exported_with_concept_head):
    config = json.loads((exported_with_concept_head / CONFIG_FILE).read_text())
    assert config["concept_features"] == 2 and config["concept_head_dim"] == 6
    lite = DTLite.load(exported_with_concept_head / WEIGHTS_FILE, exported_with_concept_head / CONFIG_FILE)
    assert lite.concept_head is not None


def test_a_model_without_the_concept_head_writes_the_original_config(exported):
    """Neither key: configs exported before the head existed load as they did."""
    directory, _ = exported
    legacy = json.loads((directory / CONFIG_FILE).read_text())
    assert "concept_features" not in legacy
    assert DTLite.load(directory / WEIGHTS_FILE, directory / CONFIG_FILE).concept_head is None


@pytest.mark.parametrize("change,message", [
    (lambda a: a.pop("concept_head.c_out.weight"), "missing array 'concept_head.c_out.weight'"),
    (lambda a: a.update({"concept_head.c_concept.weight": np.ones((6, 3), np.float32)}),
     r"'concept_head.c_concept.weight' has shape \(6, 3\), expected \(6, 2\)"),
])
def test_tampered_concept_head_weights_are_refused(exported_with_concept_head, change, message):
    rewrite_weights(exported_with_concept_head, change)
    with pytest.raises(ArtifactError, match=message):
        DTLite.load(exported_with_concept_head / WEIGHTS_FILE, exported_with_concept_head / CONFIG_FILE)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(concept_features=3), "state_dim 8 must be concept_features 3 x action_dim 4"),
    (lambda c: c.update(concept_features="2"), "concept_features must be an integer >= 0"),
    (lambda c: c.update(concept_head_dim=0), "concept_head_dim must be positive when concept_features is"),
    (lambda c: c.pop("concept_features"), "unexpected arrays"),
])
def test_inconsistent_concept_head_config_is_refused(exported_with_concept_head, edit, message):
    config = json.loads((exported_with_concept_head / CONFIG_FILE).read_text())
    edit(config)
    (exported_with_concept_head / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=message):
        verify_artifacts(directory=exported_with_concept_head)
