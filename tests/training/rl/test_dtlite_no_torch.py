"""Serving needs no torch: DTLite and the artifact checks load and run an exported policy where torch cannot import."""
from __future__ import annotations

import json

import numpy as np
import torch

from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig


# Runs in an interpreter where importing torch fails (the run_without_torch fixture).
CHILD = """
import json, sys
import numpy as np
from training.rl import artifacts
from training.rl.dtlite import DTLite

directory = sys.argv[1]
lite = DTLite.load(f"{directory}/dt_lite_weights.npz", f"{directory}/dt_lite_config.json")
x = np.load(f"{directory}/inputs.npz")
actions, probs = lite.select_action(x["rtg"], x["states"], x["actions"], x["timesteps"], x["mask"])
logits = lite.action_logits(x["rtg"], x["states"], x["actions"], x["timesteps"], x["mask"])
print(json.dumps({"torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                  "actions": actions.tolist(), "logits": logits[:, -1].tolist()}))
"""


def test_dtlite_loads_and_runs_without_torch(tmp_path, run_without_torch):
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(state_dim=5, action_dim=3, hidden_dim=16, num_layers=2, num_heads=2,
                                         context_length=4, return_scale=2.0)).eval()
    export_artifacts(model=model, output_dir=tmp_path, concept_keys=["a", "b", "c"], encoder={}, target_return=1.0)
    rng = np.random.default_rng(0)
    x = {"rtg": rng.normal(size=(2, 4)).astype(np.float32), "states": rng.normal(size=(2, 4, 5)).astype(np.float32),
         "actions": rng.integers(0, 3, (2, 4)), "timesteps": np.tile(np.arange(4), (2, 1)),
         "mask": np.array([[0, 1, 1, 1], [1, 1, 1, 1]])}
    np.savez(tmp_path / "inputs.npz", **x)
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(v) for v in x.values()))[:, -1].numpy()

    child = run_without_torch(CHILD, str(tmp_path))
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["torch_loaded"] is False
    assert np.abs(np.array(out["logits"]) - expected).max() <= 1e-4
    assert out["actions"] == expected.argmax(axis=1).tolist()
