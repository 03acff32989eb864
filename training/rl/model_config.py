"""The Decision Transformer's architecture rules, written once: DTConfig (PyTorch), DTLite (NumPy), the
artifact checks and the trainer all use `check_model_config` (no torch, no NumPy needed)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

POSITIVE_INT_KEYS = ("state_dim", "action_dim", "hidden_dim", "num_layers", "num_heads", "context_length",
                     "max_timestep")
# absent means 0: a model without the concept head (as exported before it existed)
NON_NEGATIVE_INT_KEYS = ("concept_features", "concept_head_dim")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def concept_head_fits(*, state_dim: int, action_dim: int, concept_features: int) -> bool:
    """Whether states of state_dim numbers are action_dim groups of concept_features (concept-major, as the
    encoder lays them out): the layout the concept head reads."""
    return concept_features > 0 and state_dim == concept_features * action_dim


def check_model_config(config: Mapping[str, Any]) -> None:
    """Raise ValueError naming the key unless `config` describes a buildable Decision Transformer:
    ``state_dim, action_dim, hidden_dim, num_layers, num_heads, context_length, max_timestep`` positive integers;
    ``concept_features``, ``concept_head_dim`` (optional, default 0) integers >= 0; ``hidden_dim`` divisible by
    ``num_heads``; with ``concept_features`` > 0, ``state_dim = concept_features x action_dim`` and
    ``concept_head_dim`` > 0; ``return_scale`` (optional) null or a finite number > 0. A missing required key is a
    ValueError naming it."""
    for key in POSITIVE_INT_KEYS:
        if key not in config:
            raise ValueError(f"missing key {key!r}")
        if not _is_int(config[key]) or config[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}")
    for key in NON_NEGATIVE_INT_KEYS:
        value = config.get(key, 0)
        if not _is_int(value) or value < 0:
            raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
    if config["hidden_dim"] % config["num_heads"]:
        raise ValueError(f"hidden_dim {config['hidden_dim']} must be divisible by num_heads {config['num_heads']}")
    features = config.get("concept_features", 0)
    if features and not concept_head_fits(state_dim=config["state_dim"], action_dim=config["action_dim"],
                                          concept_features=features):
        raise ValueError(f"state_dim {config['state_dim']} must be concept_features {features} x action_dim "
                         f"{config['action_dim']} for the concept head")
    if features and not config.get("concept_head_dim"):
        raise ValueError("concept_head_dim must be positive when concept_features is")
    scale = config.get("return_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale) or scale <= 0):
        raise ValueError(f"return_scale must be a number > 0, got {scale!r}")
