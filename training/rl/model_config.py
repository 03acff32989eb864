"""The Decision Transformer's architecture rules, written once: DTConfig (PyTorch), DTLite (NumPy), the
artifact checks, the trainer and serving all use them (no torch, no NumPy needed): `check_model_config`, the
default size (context length, width, layers, heads: DTConfig's defaults), which models score concepts added after
training (`scores_unseen_concepts`), the widest local attention window that keeps the per-step path exact
(`max_attention_window`; the default model's: `DEFAULT_ATTENTION_WINDOW`) and the windows a training run takes
(`attention_window_problem`)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Timesteps (reviews) of context the model reads: 20 as in the original (Chen et al. 2021). DTConfig's default, and
# the learner-state encoding while a curriculum has no active policy version (curriculum/state_specs.py).
DEFAULT_CONTEXT_LENGTH = 20
# The size train_crl_policy and the admin's training runs train (DTConfig's defaults; 2026-12-07, chosen on validation
# seeds: bench/README.md, "Model size"): as good a policy as the original DT's hidden 128 / 4 layers / 4 heads (Chen
# et al. 2021), at about a third of its training time and of DTLite's cost a recommendation. Declared here, without
# PyTorch, so that the web process (the admin's launch form) knows the default model's widest attention window.
DEFAULT_HIDDEN_DIM = 64
DEFAULT_NUM_LAYERS = 2
DEFAULT_NUM_HEADS = 2

POSITIVE_INT_KEYS = ("state_dim", "action_dim", "hidden_dim", "num_layers", "num_heads", "context_length",
                     "max_timestep")
# absent means 0: a model without the concept head (as exported before it existed)
NON_NEGATIVE_INT_KEYS = ("concept_features", "concept_head_dim")

# How the state token is made from the states [.., S] (the config's "state_token"; absent means "linear"):
# "linear":  a linear embedding of all S numbers (models exported before the summary token): grows with concepts.
# "summary": a linear embedding of a fixed-size summary of the per-concept features (below): the same size for
#            any number of concepts; the per-concept features reach the concept head directly.
STATE_TOKENS = ("linear", "summary")
# The encoder's per-concept layout (training/rl/encoder/config.py, STATE_FEATURES) the summary reads: feature 0
# is the estimated recall in [0, 1] (0 when never reviewed) and feature 2 is log1p(reviews) / log1p(100), > 0
# exactly when the concept has been reviewed.
SUMMARY_FEATURES_PER_CONCEPT = 4
SUMMARY_RECALL = 0
SUMMARY_REVIEWS = 2
SUMMARY_RECALL_THRESHOLDS = (0.5, 0.7, 0.9)
SUMMARY_COUNT_SCALE = math.log1p(1000.0)
# The features the encoder gives every concept never reviewed (recall 0, elapsed -1, reviews 0, stability 0): in
# most states most concepts have them, so the concept head scores that vector once per state token instead of
# once per concept (dt.ConceptScores; the same numbers either way, a concept with other features is scored as
# usual). tests/training/rl/test_dt.py checks it against the encoder.
UNREVIEWED_FEATURES = (0.0, -1.0, 0.0, 0.0)
# The summary of one state (C concepts, F features each; "reviewed" = feature SUMMARY_REVIEWS > 0, n of them):
#   [0]                 n / C                                    share of concepts reviewed
#   [1]                 log1p(n) / log1p(1000)                   how many were reviewed
#   [2 : 2+R]           share of the C concepts reviewed with recall < each of SUMMARY_RECALL_THRESHOLDS
#   then per feature j: mean over all C concepts, then mean, min and max over the reviewed ones (0 when n = 0)
# dt.StateSummary (torch) and dtlite.StateSummary (NumPy) compute it; the order above is theirs.


def summary_dim(concept_features: int) -> int:
    """Length of the state summary for concept_features features per concept."""
    return 2 + len(SUMMARY_RECALL_THRESHOLDS) + 4 * concept_features


def state_token_input_dim(config: Mapping[str, Any]) -> int:
    """How many numbers the state token's linear embedding reads: state_dim (linear) or the summary's length."""
    if config.get("state_token", "linear") == "summary":
        return summary_dim(config["concept_features"])
    return config["state_dim"]


def scores_unseen_concepts(config: Mapping[str, Any] | None) -> bool:
    """Whether a model with this config (a `dt_lite_config.json` or DTConfig's fields; None: no model) scores
    concepts added to the curriculum after training, from their features: only with the summary state token, whose
    size does not depend on the number of concepts, and the concept head (``concept_features`` > 0), which scores
    any concept. DTLite then widens its action space (training/rl/dtlite.py); serving encodes learner states over
    all of the curriculum's concepts (curriculum/state_specs.py)."""
    config = config or {}
    return config.get("state_token", "linear") == "summary" and bool(config.get("concept_features"))


def max_attention_window(*, context_length: int, num_layers: int) -> int:
    """The widest local attention window (in tokens) for which a token's keys and values never change once computed
    and the per-step path stays exact: ``(3 K - 2) // num_layers + 1`` for a context of K timesteps.

    Why: with a window of W tokens each layer reaches W - 1 tokens further back, so after ``num_layers`` layers the
    last state token (index 3K - 2 of the 3K tokens of a full context; the last action token comes after it)
    depends on the tokens ``num_layers x (W - 1)`` before it. While that reach stays inside the context
    (``num_layers (W - 1) <= 3K - 2``), every value the last state token depends on, at every layer, is computed
    from tokens that are all inside the context, so a forward over the last K timesteps gives the same numbers as
    one over the whole history, and a value cached when its token was newest is still the one a full forward
    computes later (DTLite's step path, training/rl/kv_cache.py). A wider window would let the full forward's
    truncated start (the context slides) reach the last state token, and the cache would go stale."""
    return (3 * context_length - 2) // num_layers + 1


# The default model's widest exact window (30 tokens at context 20 and 2 layers): the window train_crl_policy and the
# training runs train when none is asked for (trainer.default_model_config), and the widest they accept.
DEFAULT_ATTENTION_WINDOW = max_attention_window(context_length=DEFAULT_CONTEXT_LENGTH, num_layers=DEFAULT_NUM_LAYERS)


def attention_window_range(*, context_length: int = DEFAULT_CONTEXT_LENGTH,
                           num_layers: int = DEFAULT_NUM_LAYERS) -> str:
    """The windows a training run of a model of ``context_length`` timesteps and ``num_layers`` layers (the default
    size when not given) takes, in words: "0 (full attention) or a window of 1 to W tokens (...)"."""
    widest = max_attention_window(context_length=context_length, num_layers=num_layers)
    return (f"0 (full attention) or a window of 1 to {widest} tokens ((3 x context_length - 2) // num_layers + 1 "
            f"keeps the per-step path exact)")


def attention_window_problem(window: Any, *, context_length: int = DEFAULT_CONTEXT_LENGTH,
                             num_layers: int = DEFAULT_NUM_LAYERS) -> str:
    """What is wrong with a local attention window asked of a training run ("" when nothing): None (the default, the
    widest exact window) and 0 (full attention) pass, as does an integer from 1 to ``max_attention_window`` of a model
    of ``context_length`` timesteps and ``num_layers`` layers (the default size when not given); else "expected
    ``attention_window_range``". The rule of `train_crl_policy --attention-window`
    (training.pipeline.check_attention_window), the same bound as check_model_config's; the admin's training runs
    (TrainingRun.attention_window, the default size) bound their column by DEFAULT_ATTENTION_WINDOW and refuse with
    ``attention_window_range``'s words."""
    if window is None or (_is_int(window) and window == 0):
        return ""
    widest = max_attention_window(context_length=context_length, num_layers=num_layers)
    if _is_int(window) and 1 <= window <= widest:
        return ""
    return "expected " + attention_window_range(context_length=context_length, num_layers=num_layers)


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
    ``concept_head_dim`` > 0; ``state_token`` (optional, default "linear") one of STATE_TOKENS, "summary" only with
    the encoder's 4 features per concept; ``return_scale`` (optional) null or a finite number > 0;
    ``attention_window`` (optional, absent or null: full causal attention) an integer from 1 to
    ``max_attention_window``. A missing required key is a ValueError naming it."""
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
    token = config.get("state_token", "linear")
    if token not in STATE_TOKENS:
        raise ValueError(f"state_token must be one of {', '.join(STATE_TOKENS)}, got {token!r}")
    if token == "summary" and features != SUMMARY_FEATURES_PER_CONCEPT:
        raise ValueError(f"state_token 'summary' needs concept_features {SUMMARY_FEATURES_PER_CONCEPT} (the "
                         f"encoder's layout), got {features}")
    window = config.get("attention_window")
    if window is not None:
        widest = max_attention_window(context_length=config["context_length"], num_layers=config["num_layers"])
        if not _is_int(window) or not 1 <= window <= widest:
            raise ValueError(f"attention_window must be null or an integer from 1 to {widest} (tokens; (3 x "
                             f"context_length - 2) // num_layers + 1 keeps the per-step path exact), got {window!r}")
    scale = config.get("return_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale) or scale <= 0):
        raise ValueError(f"return_scale must be a number > 0, got {scale!r}")
