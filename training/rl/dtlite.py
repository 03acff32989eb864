"""DTLite: the Decision Transformer's inference in NumPy only, for serving without torch.

Read it beside `training/rl/dt.py`: the same blocks under the same names, computing the same numbers
(max abs difference <= 1e-4 by contract, <= 1e-5 in tests/training/rl/test_dtlite.py and test_dtlite_step.py).
`select_action` computes only what the last state token needs, which is all a recommendation uses. Where a linear map
follows a LayerNorm its affine weight and bias are folded into that map once (LayerNorm.fold).

Local attention (``attention_window`` W in the config; absent: full attention): each token attends to the last W
tokens only. `select_action` then computes only the last state token's cone, and the per-step path (`prefill`,
`extend`, `step`, a `StepState`) computes only the newest tokens against cached per-block keys and values, exact
because a token's keys and values never change once computed (the bound on W: model_config.max_attention_window).

Concepts added after training: a model with the summary state token (``scores_unseen_concepts``) also takes
states of C' > action_dim concepts (the trained ones first, in position order). The summary then covers all C'
concepts; concept c >= action_dim is scored from its own features by the concept head, plus the linear head's
average over the trained concepts (its weights know nothing of c, so the prior is a typical concept's), and an
action c >= action_dim in the context is embedded as the average of the trained actions' embeddings.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.rl.artifacts import Source, check_weights, verify_artifacts
from training.rl.model_config import (
    SUMMARY_COUNT_SCALE, SUMMARY_RECALL, SUMMARY_RECALL_THRESHOLDS, SUMMARY_REVIEWS, check_model_config,
    scores_unseen_concepts,
)

LAYER_NORM_EPS = 1e-5  # as dt.LAYER_NORM_EPS
KeyValues = tuple[np.ndarray, np.ndarray]  # one block's keys [B, heads, d, m] and values [B, heads, m, d]
_GELU_C = np.float32(np.sqrt(2.0 / np.pi))


def _linear(w: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    # torch stores Linear weights [out, in]; keep [in, out] contiguous so x @ W needs no transpose per call
    return np.array(w[name + ".weight"].T, np.float32, order="C"), np.array(w[name + ".bias"], np.float32)


@functools.lru_cache(maxsize=64)
def _ones(n: int) -> np.ndarray:
    ones = np.ones(n, np.float32)
    ones.flags.writeable = False  # shared by every call
    return ones


def _row_sums(x: np.ndarray) -> np.ndarray:
    # a matrix-vector product: several times faster than x.sum(axis=-1) for short rows
    return _dense(x, _ones(x.shape[-1]))


def _dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [..., n] @ w [n, m] (or [n]) as ONE matrix product over all the leading axes: NumPy's matmul of a stack
    [B, L, n] runs one small product per leading index, which at few rows each (the per-step path: 3 tokens of
    1,000 learners) measured 6x slower than the same rows in one [B L, n] product (numpy 2.4, OpenBLAS)."""
    if x.ndim <= 2:
        return x @ w
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + w.shape[1:])


def _twice_gelu(h: np.ndarray) -> np.ndarray:
    """2 x tanh GELU, ``h (1 + tanh(c (h + 0.044715 h^3)))`` with c = sqrt(2/pi): the caller folds the 0.5 into
    the next weights (exact: a power of two)."""
    t = h * h
    t *= _GELU_C * np.float32(0.044715)
    t += _GELU_C
    t *= h
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= h
    return t


class LayerNorm:
    """LayerNorm over the last axis. Where a linear map follows directly (ln_1 -> c_attn, ln_2 -> c_fc, ln_f -> the
    heads), its affine weight and bias are folded into that map's weights once (`fold`) and only `normalize` runs
    per call: ``(x_hat g + b) W + c = x_hat (g W) + (b W + c)``, the same function (float32 rounding apart)."""

    def __init__(self, w: Mapping[str, np.ndarray], name: str) -> None:
        self.weight = np.asarray(w[name + ".weight"], np.float32)
        self.bias = np.asarray(w[name + ".bias"], np.float32)
        self.inv_n = np.float32(1.0 / self.weight.shape[0])

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / sqrt(var + eps) over the last axis, float32, without the affine weight and bias."""
        mean = _row_sums(x)
        mean *= self.inv_n
        xc = x - mean[..., None]
        var = _row_sums(xc * xc)  # for rows of ~128, faster than einsum's dispatch
        var *= self.inv_n
        var += np.float32(LAYER_NORM_EPS)
        rstd = np.sqrt(var, out=var)
        np.divide(np.float32(1.0), rstd, out=rstd)
        xc *= rstd[..., None]  # multiply by 1 / std, as torch does
        return xc

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xc = self.normalize(x)
        xc *= self.weight
        xc += self.bias
        return xc

    def fold(self, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """A linear map [H, out] (x @ weight + bias; bias None: none) applied after this LayerNorm, as the map to
        apply after `normalize`: (g[:, None] * weight, b @ weight + bias), computed in float64, stored float32."""
        w64 = weight.astype(np.float64)
        folded_bias = self.bias.astype(np.float64) @ w64
        if bias is not None:
            folded_bias += bias
        return (np.ascontiguousarray(self.weight.astype(np.float64)[:, None] * w64, dtype=np.float32),
                folded_bias.astype(np.float32))


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of [..., Lq, L] (-inf = masked; every row has a finite entry)."""
    # One max per [Lq, L] matrix instead of per row is much cheaper, and equal in exact arithmetic (softmax
    # is shift-invariant); only a row lying ~46 below its matrix's max could underflow: redo those exactly.
    p = scores - scores.max(axis=(-2, -1), keepdims=True)
    np.exp(p, out=p)
    total = _row_sums(p)
    if total.min() < 1e-20:
        p = scores - scores.max(axis=-1, keepdims=True)
        np.exp(p, out=p)
        total = _row_sums(p)
    np.divide(np.float32(1.0), total, out=total)
    p *= total[..., None]
    return p


class CausalSelfAttention:
    def __init__(self, w: Mapping[str, np.ndarray], name: str, config: Mapping[str, Any], ln_1: LayerNorm) -> None:
        self.num_heads = config["num_heads"]
        c_attn_w, c_attn_b = _linear(w, name + ".c_attn")  # [H, 3H]: q | k | v
        self.c_attn_w, self.c_attn_b = ln_1.fold(c_attn_w, c_attn_b)  # ln_1's affine folded in: x is normalised
        H = self.c_attn_w.shape[0]
        # q k^T / sqrt(d): fold 1 / sqrt(d) into the query projection once, not into every score matrix
        scale = np.float32(1.0 / np.sqrt(H // self.num_heads))
        self.c_attn_w[:, :H] *= scale
        self.c_attn_b[:H] *= scale
        # the last-row path projects q for one token and k, v for all: keep those halves contiguous too
        self.q_w, self.q_b = np.ascontiguousarray(self.c_attn_w[:, :H]), self.c_attn_b[:H]
        self.kv_w, self.kv_b = np.ascontiguousarray(self.c_attn_w[:, H:]), self.c_attn_b[H:]
        self.c_proj_w, self.c_proj_b = _linear(w, name + ".c_proj")

    def keys_values(self, x: np.ndarray) -> KeyValues:
        """The keys [B, heads, d, n] and values [B, heads, n, d] of the n tokens x [B, n, H] (normalised)."""
        B, n, H = x.shape
        heads, d = self.num_heads, H // self.num_heads
        kv = _dense(x, self.kv_w)
        kv += self.kv_b
        k = kv[..., :H].reshape(B, n, heads, d).transpose(0, 2, 3, 1)
        v = kv[..., H:].reshape(B, n, heads, d).transpose(0, 2, 1, 3)
        return k, v

    def __call__(self, x: np.ndarray, bias: np.ndarray, query: slice | None = None, past: KeyValues | None = None,
                 keep: slice | None = None) -> tuple[np.ndarray, KeyValues | None]:
        """x [B, n, H] (normalised by ln_1) -> ([B, n, H], or [B, n_q, H] for the rows ``query`` only; the keys and
        values of the key positions ``keep`` (of past's m then x's n), copied, or None without ``keep``). ``bias``
        [.., n, m + n]: 0 where a query may attend, -inf elsewhere."""
        B, n, H = x.shape
        heads, d = self.num_heads, H // self.num_heads
        rows = x if query is None else x[:, query]
        if query is not None:
            bias = bias[..., query, :]
        if past is not None:
            return self._after_past(x, rows, bias, past, keep)
        if rows.shape[1] == 1:  # keys and values of every row, the query of one
            k, v = self.keys_values(x)
            q = self._queries(rows)
        else:
            qkv = _dense(x, self.c_attn_w)
            qkv += self.c_attn_b
            q = self._heads(qkv[..., :H] if query is None else qkv[:, query, :H])
            k = qkv[..., H:2 * H].reshape(B, n, heads, d).transpose(0, 2, 3, 1)  # [B, heads, d, L]
            v = qkv[..., 2 * H:].reshape(B, n, heads, d).transpose(0, 2, 1, 3)  # [B, heads, L, d]
        att = q @ k  # [B, heads, Lq, L]
        att += bias  # 0 where allowed, -inf elsewhere; the diagonal is always allowed, so no row is empty
        kept = None if keep is None else (k[..., keep].copy(), v[:, :, keep].copy())
        return self._project(_softmax(att) @ v), kept

    def _heads(self, q: np.ndarray) -> np.ndarray:
        """Queries [B, Lq, H] -> [B, heads, Lq, d] (already scaled: the scale is folded into q_w)."""
        B, Lq, H = q.shape
        return q.reshape(B, Lq, self.num_heads, H // self.num_heads).transpose(0, 2, 1, 3)

    def _queries(self, rows: np.ndarray) -> np.ndarray:
        """The queries [B, heads, Lq, d] of the rows [B, Lq, H] (normalised)."""
        q = _dense(rows, self.q_w)
        q += self.q_b
        return self._heads(q)

    def _project(self, y: np.ndarray) -> np.ndarray:
        """The heads' outputs [B, heads, Lq, d] joined and projected: [B, Lq, H]."""
        B, heads, Lq, d = y.shape
        y = _dense(y.transpose(0, 2, 1, 3).reshape(B, Lq, heads * d), self.c_proj_w)
        y += self.c_proj_b
        return y

    def _after_past(self, x: np.ndarray, rows: np.ndarray, bias: np.ndarray, past: KeyValues,
                    keep: slice | None) -> tuple[np.ndarray, KeyValues | None]:
        """``__call__`` for the n new tokens x [B, n, H] after the m cached ones of ``past`` (query ``rows`` [B, Lq,
        H]): the scores against the cached keys and against the new ones are computed apart and softmaxed together,
        so that the cached arrays are read in place, never joined into new [.., m + n] ones; only the kept positions
        ``keep`` (of past's m then the n new) are copied out, once. At 1,000 learners this took 13% off the
        per-step decision (bench/README.md, `dtlite.py`)."""
        m = past[0].shape[3]
        k, v = self.keys_values(x)  # the new tokens' only: [B, heads, d, n], [B, heads, n, d]
        q = self._queries(rows)  # [B, heads, Lq, d]
        B, heads, Lq, _ = q.shape
        att = np.empty((B, heads, Lq, m + x.shape[1]), np.float32)
        np.matmul(q, past[0], out=att[..., :m])
        np.matmul(q, k, out=att[..., m:])
        att += bias
        p = _softmax(att)
        y = p[..., :m] @ past[1]
        y += p[..., m:] @ v
        return self._project(y), None if keep is None else _kept(past, (k, v), keep)


def _kept(past: KeyValues, new: KeyValues, keep: slice) -> KeyValues:
    """The keys and values of the positions ``keep`` of past's m cached tokens then the n new ones, copied into new
    arrays once, without joining all m + n first. ValueError for a slice with a step other than 1 (a contiguous
    window is all the cache keeps)."""
    m, n = past[0].shape[3], new[0].shape[3]
    start, stop, step = keep.indices(m + n)
    if step != 1:
        raise ValueError(f"_kept: a contiguous slice of the positions, got step {step}")
    old, fresh = slice(min(start, m), min(stop, m)), slice(max(start - m, 0), max(stop - m, 0))
    return (np.concatenate((past[0][..., old], new[0][..., fresh]), axis=3),
            np.concatenate((past[1][:, :, old], new[1][:, :, fresh]), axis=2))


class MLP:
    def __init__(self, w: Mapping[str, np.ndarray], name: str, ln_2: LayerNorm) -> None:
        self.c_fc_w, self.c_fc_b = ln_2.fold(*_linear(w, name + ".c_fc"))  # ln_2's affine folded in
        self.c_proj_w, self.c_proj_b = _linear(w, name + ".c_proj")
        self.c_proj_w *= np.float32(0.5)  # GELU's factor 0.5, folded in (exact: a power of two)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = _dense(x, self.c_fc_w)
        h += self.c_fc_b
        y = _dense(_twice_gelu(h), self.c_proj_w)  # GELU's 0.5 is in c_proj_w
        y += self.c_proj_b
        return y


class Block:
    def __init__(self, w: Mapping[str, np.ndarray], name: str, config: Mapping[str, Any]) -> None:
        self.ln_1 = LayerNorm(w, name + ".ln_1")
        self.attn = CausalSelfAttention(w, name + ".attn", config, self.ln_1)
        self.ln_2 = LayerNorm(w, name + ".ln_2")
        self.mlp = MLP(w, name + ".mlp", self.ln_2)

    def __call__(self, x: np.ndarray, bias: np.ndarray, query: slice | None = None, past: KeyValues | None = None,
                 keep: slice | None = None) -> tuple[np.ndarray, KeyValues | None]:
        """x [B, n, H] -> ([B, n, H], or [B, n_q, H]: only the rows ``query``'s outputs when it is given; the kept
        keys and values, as CausalSelfAttention's)."""
        y, kept = self.attn(self.ln_1.normalize(x), bias, query, past, keep)
        y += x if query is None else x[:, query]
        y += self.mlp(self.ln_2.normalize(y))
        return y, kept

    def keys_values(self, x: np.ndarray, past: KeyValues, keep: slice) -> KeyValues:
        """Only the keys and values this block's attention would read for x [B, n, H] after ``past``, those of the
        positions ``keep`` (as ``__call__``'s kept ones): what the last block computes for tokens whose own output
        nothing reads (DTLite.extend without logits)."""
        return _kept(past, self.attn.keys_values(self.ln_1.normalize(x)), keep)


class ConceptHead:
    def __init__(self, w: Mapping[str, np.ndarray], name: str, config: Mapping[str, Any], ln_f: LayerNorm) -> None:
        self.concept_features = config["concept_features"]
        self.c_state_w, self.c_state_b = ln_f.fold(*_linear(w, name + ".c_state"))  # [H, D]; ln_f's affine folded in
        self.c_concept_w = np.array(w[name + ".c_concept.weight"].T, np.float32, order="C")  # [F, D]
        # [D]; GELU's factor 0.5 folded in (exact: a power of two)
        self.c_out_w = np.array(w[name + ".c_out.weight"][0], np.float32) * np.float32(0.5)

    def __call__(self, h: np.ndarray, states: np.ndarray) -> np.ndarray:
        """h [..., H] (normalised by ln_f, its affine folded in), states [..., S] -> scores [..., A]."""
        features = states.reshape(states.shape[:-1] + (-1, self.concept_features))  # [..., A, F]
        z = _dense(features, self.c_concept_w)  # [..., A, D]
        base = _dense(h, self.c_state_w)
        base += self.c_state_b
        z += base[..., None, :]
        return _dense(_twice_gelu(z), self.c_out_w)  # GELU's 0.5 is in c_out_w


class StateSummary:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.concept_features = config["concept_features"]
        self.thresholds = np.asarray(SUMMARY_RECALL_THRESHOLDS, np.float32)

    def __call__(self, states: np.ndarray) -> np.ndarray:
        """states [B, T, C x F] -> [B, T, summary_dim(F)] (formulas and order in model_config.py)."""
        B, T, _ = states.shape
        # [B, T, F, C]: each reduction runs along contiguous memory
        x = np.ascontiguousarray(states.reshape(B, T, -1, self.concept_features).transpose(0, 1, 3, 2))
        C = np.float32(x.shape[3])
        reviewed = x[:, :, SUMMARY_REVIEWS] > 0  # [B, T, C]
        n = reviewed.sum(-1, keepdims=True, dtype=np.float32)  # [B, T, 1]
        any_reviewed = n > 0
        recall = np.where(reviewed, x[:, :, SUMMARY_RECALL], np.float32(np.inf))  # never below a threshold
        due = (recall[..., None, :] < self.thresholds[:, None]).sum(-1, dtype=np.float32)  # [B, T, thresholds]
        mask = reviewed[:, :, None]  # [B, T, 1, C]
        mean_all = x.sum(-1) / C  # [B, T, F]
        mean_reviewed = np.where(mask, x, np.float32(0)).sum(-1) / np.maximum(n, np.float32(1))
        min_reviewed = np.minimum.reduce(x, axis=-1, where=mask, initial=np.float32(np.inf))
        max_reviewed = np.maximum.reduce(x, axis=-1, where=mask, initial=np.float32(-np.inf))
        return np.concatenate([
            n / C,
            np.log1p(n) / np.float32(SUMMARY_COUNT_SCALE),
            due / C,
            mean_all,
            mean_reviewed,
            np.where(any_reviewed, min_reviewed, np.float32(0)),
            np.where(any_reviewed, max_reviewed, np.float32(0)),
        ], axis=-1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class StepState:
    """What DTLite's per-step path keeps of B sequences after their newest state token (DTLite.prefill, extend,
    step): per block the keys [B, heads, d, m] and values [B, heads, m, d] (float32) of the last m <=
    attention_window - 1 tokens, the only ones a later token can attend to; ``valid`` bool [B, m] (False: a left
    padding token; None: all valid); ``timesteps`` int64 [B], the newest state token's timestep (its action token
    has it); ``logits`` float32 [B, A] of the newest state token (None after ``extend(logits=False)``).
    Never changed in place: extend and step return a new one, so one may be shared between threads."""

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    valid: np.ndarray | None
    timesteps: np.ndarray
    logits: np.ndarray | None

    @property
    def batch_size(self) -> int:
        return self.timesteps.shape[0]

    @property
    def cached_tokens(self) -> int:
        """m, the tokens whose keys and values are kept."""
        return self.values[0].shape[2]

    @functools.cached_property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what a cache of states counts against its size)."""
        arrays = (*self.keys, *self.values, self.timesteps,
                  *(a for a in (self.valid, self.logits) if a is not None))
        return sum(a.nbytes for a in arrays)


class DTLite:
    """A Decision Transformer for inference; thread-safe (per-thread scratch state only; a StepState is never
    changed in place)."""

    def __init__(self, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
        check_model_config(config)  # ValueError naming the key; DTLite.load's configs were checked already
        check_weights(weights, config=config)
        self.config = dict(config)
        self.state_dim = config["state_dim"]
        self.action_dim = config["action_dim"]
        self.context_length = config["context_length"]
        self.max_timestep = config["max_timestep"]
        self.return_scale = np.float32(config["return_scale"])
        w = weights
        self.embed_timestep = np.asarray(w["embed_timestep.weight"], np.float32)  # [max_timestep, H]
        self.embed_return_w = np.asarray(w["embed_return.weight"][:, 0], np.float32)  # [H]
        self.embed_return_b = np.asarray(w["embed_return.bias"], np.float32)
        self.state_summary = StateSummary(config) if config.get("state_token", "linear") == "summary" else None
        self.embed_state_w, self.embed_state_b = _linear(w, "embed_state")
        self.embed_action = np.asarray(w["embed_action.weight"], np.float32)  # [A, H]
        self.embed_ln = LayerNorm(w, "embed_ln")
        self.blocks = [Block(w, f"blocks.{i}", config) for i in range(config["num_layers"])]
        self.ln_f = LayerNorm(w, "ln_f")
        # ln_f's affine folded into both heads: they read ln_f.normalize's output
        self.predict_action_w, self.predict_action_b = self.ln_f.fold(*_linear(w, "predict_action"))
        self.concept_head = (ConceptHead(w, "concept_head", config, self.ln_f) if config.get("concept_features")
                             else None)
        self.attention_window = config.get("attention_window")
        # Concepts beyond the trained action space (see the module docstring): the rule is model_config's.
        self.scores_unseen_concepts = scores_unseen_concepts(config)
        if self.scores_unseen_concepts:
            self.unseen_action = self.embed_action.mean(axis=0)  # [H]
            self.unseen_predict_w = self.predict_action_w.mean(axis=1)  # [H]
            self.unseen_predict_b = self.predict_action_b.mean()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle everything but the per-thread scratch state (a ``threading.local``, which does not pickle): a policy
        ships to evaluation worker processes (``evaluation.evaluate(processes=N)``)."""
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled DTLite with fresh, empty per-thread scratch state."""
        self.__dict__.update(state)
        self._local = threading.local()

    @classmethod
    def load(cls, weights: Source, config: Source) -> DTLite:
        """Load `dt_lite_weights.npz` and `dt_lite_config.json` (paths, bytes or file objects), verified."""
        parsed, arrays = verify_artifacts(weights=weights, config=config)
        return cls(arrays, parsed)

    def _causal_bias(self, L: int) -> np.ndarray:
        # [L, L] additive mask, cached per thread and length: 0 where query i may see key j (j <= i, and
        # i - j < attention_window with one), -inf elsewhere
        cache = self._local.__dict__.setdefault("causal", {})
        if L not in cache:
            position = np.arange(L)
            allowed = position[:, None] >= position[None, :]
            if self.attention_window is not None:
                allowed &= position[:, None] - position[None, :] < self.attention_window
            cache[L] = np.where(allowed, np.float32(0), np.float32(-np.inf))
        return cache[L]

    def _bias(self, attention_mask: np.ndarray | None, B: int, T: int, L: int) -> np.ndarray:
        causal = self._causal_bias(3 * T)[:L, :L]
        valid = np.asarray(attention_mask) != 0 if attention_mask is not None else None
        if valid is None or valid.all():
            return causal
        # as dt.token_attention_mask: causal, no padded key, but always the token itself
        keys = np.repeat(valid, 3, axis=1)[:, :L]  # [B, L]
        padded = ~keys[:, None, :] & ~np.eye(L, dtype=bool)  # [B, L, L]
        return np.where(padded, np.float32(-np.inf), causal)[:, None]  # [B, 1, L, L]

    def _return_tokens(self, rtg: np.ndarray, out: np.ndarray) -> None:
        np.multiply((rtg / self.return_scale)[..., None], self.embed_return_w, out=out)
        out += self.embed_return_b

    def _state_tokens(self, states: np.ndarray, out: np.ndarray) -> None:
        token_input = states if self.state_summary is None else self.state_summary(states)
        np.matmul(token_input, self.embed_state_w, out=out)
        out += self.embed_state_b

    def _time(self, timesteps: np.ndarray) -> np.ndarray:
        if timesteps.dtype == np.int64:  # what serving passes: np.clip's wrapper costs microseconds a call here
            return self.embed_timestep[np.minimum(np.maximum(timesteps, 0), self.max_timestep - 1)]
        # any other integer type (uint8 may not hold the bound; uint64 and int64 promote to float): np.clip's rules
        return self.embed_timestep[np.clip(timesteps, 0, self.max_timestep - 1)]

    def _heads(self, h: np.ndarray, states: np.ndarray) -> np.ndarray:
        """The action logits [..., A] from the state tokens' last-block outputs h [..., H] and their states."""
        h = self.ln_f.normalize(h)  # ln_f's affine is folded into both heads
        logits = _dense(h, self.predict_action_w)
        logits += self.predict_action_b
        if states.shape[-1] > self.state_dim:  # concepts added after training: a typical concept's linear score
            extra = (states.shape[-1] - self.state_dim) // self.concept_head.concept_features
            unseen = _dense(h, self.unseen_predict_w) + self.unseen_predict_b  # [..]
            logits = np.concatenate([logits, np.repeat(unseen[..., None], extra, axis=-1)], axis=-1)
        if self.concept_head is not None:
            logits += self.concept_head(h, states)
        return logits

    def _forward(self, returns_to_go: Any, states: Any, actions: Any, timesteps: Any,
                 attention_mask: Any, last_only: bool, prefill: bool = False) -> np.ndarray | StepState:
        rtg = np.asarray(returns_to_go, np.float32)
        states = np.asarray(states, np.float32)
        actions = np.asarray(actions)
        timesteps = np.asarray(timesteps)
        B, T = self._check_inputs(rtg, states, actions, timesteps, attention_mask, last_only)
        H = self.embed_timestep.shape[1]
        last = 3 * T - 2  # the last state token
        L = 3 * T
        window = self.attention_window
        blocks = len(self.blocks)
        # starts[i]: the first token block i reads (starts[i + 1]: the first whose output it computes). All of them,
        # but for the last state token alone with local attention: block i's outputs reach (W - 1) tokens further
        # per later block, so earlier rows are never read (blocks 0-1 compute 30 and 1 of the 59 rows at the
        # defaults, a 30-token window over 2 blocks; 43, 29, 15 and 1 with 4 blocks and a 15-token window).
        starts = [0] * (blocks + 1)
        if last_only and window is not None:
            starts = [max(0, last - (blocks - i) * (window - 1)) for i in range(blocks)] + [last]
            L = last + 1
        elif last_only:
            starts[-1] = last
        if last_only and window is None and L % 4:
            # The last action token comes after the last state token, so it cannot change its answer:
            # skip it, except where 3T is a multiple of 4 (T = 20...): OpenBLAS's kernels work in blocks
            # of rows, and 60 rows measured ~10% faster than 59 (causally the extra row is invisible).
            L -= 1
        x = np.empty((B, T, 3, H), np.float32)
        self._return_tokens(rtg, x[:, :, 0])
        self._state_tokens(states, x[:, :, 1])
        if last_only:
            x[:, :-1, 2] = self._embed_actions(actions[:, :-1])
            x[:, -1, 2] = 0.0  # never seen by the last state token (see L above)
        else:
            x[:, :, 2] = self._embed_actions(actions)
        x += self._time(timesteps)[:, :, None]
        x = self.embed_ln(x.reshape(B, 3 * T, H)[:, starts[0]:L])  # interleaved (R_1, s_1, a_1, R_2, ...)
        bias = self._bias(attention_mask, B, T, L)
        # prefill: every block's keys and values of the last W - 1 tokens up to the last state token
        keep = slice(max(0, last + 1 - (window - 1)), last + 1) if prefill else None
        kept = []
        for i, block in enumerate(self.blocks):
            lo, out = starts[i], starts[i + 1]
            query = None if out == 0 else slice(out - lo, out - lo + 1 if out == last else None)
            x, kv = block(x, bias[..., lo:L, lo:L], query, keep=None if keep is None else slice(
                keep.start - lo, keep.stop - lo))
            kept.append(kv)
        logits = self._heads(x[:, 0] if last_only else x[:, 1::3], states[:, -1] if last_only else states)
        if not prefill:
            return logits
        valid = None
        if attention_mask is not None and not (np.asarray(attention_mask) != 0).all():
            valid = np.repeat(np.asarray(attention_mask) != 0, 3, axis=1)[:, keep]
        return StepState(keys=tuple(k for k, _ in kept), values=tuple(v for _, v in kept), valid=valid,
                         timesteps=timesteps[:, -1].astype(np.int64), logits=logits)

    # ------------------------------------------------------------------------------------ the per-step path
    def prefill(self, returns_to_go: Any, states: Any, actions: Any, timesteps: Any,
                attention_mask: Any = None) -> StepState:
        """The full forward of `select_action` (the inputs as its: [B, T], the last action unread), kept as a
        StepState: the last state token's logits [B, A] and every block's keys and values of the last
        ``attention_window - 1`` tokens up to it, from which `extend` and `step` go on. ValueError for a model
        without ``attention_window`` (with full attention an earlier token's keys change as the context slides)."""
        self._require_window()
        return self._forward(returns_to_go, states, actions, timesteps, attention_mask, last_only=True, prefill=True)

    def step(self, state: StepState, action: Any, return_to_go: Any, states: Any, timestep: Any, *,
             keep_cache: bool = True) -> StepState:
        """One new timestep after ``state``: ``action`` int [B], the action taken at state's last state token (the
        concept reviewed), then the new ``return_to_go`` float [B], ``states`` float [B, S] and ``timestep`` int
        [B]. Returns the new StepState, whose ``logits`` [B, A] equal `select_action`'s logits on the last
        ``context_length`` timesteps of the whole sequence (float32 rounding apart): only the 3 new tokens are
        computed, against the cached keys and values. ``state`` is not changed (the new one has its own arrays);
        ``keep_cache`` as `extend`'s."""
        return self.extend(state, np.asarray(action)[:, None], np.asarray(return_to_go)[:, None],
                           np.asarray(states)[:, None], np.asarray(timestep)[:, None], keep_cache=keep_cache)

    def extend(self, state: StepState, actions: Any, returns_to_go: Any, states: Any, timesteps: Any, *,
               logits: bool = True, keep_cache: bool = True) -> StepState:
        """m >= 1 new timesteps after ``state``: ``actions`` int [B, m] (the action taken at state's last state
        token, then at the first m - 1 new ones), ``returns_to_go`` float [B, m], ``states`` float [B, m, S],
        ``timesteps`` int [B, m]. Computes only the 3m new tokens (a, R, s per timestep) against the cached keys
        and values. ``logits`` False: the last block computes the new tokens' keys and values only, and the
        returned state's logits are None (a learner who reviewed without asking for a recommendation); else as
        `step`. ``keep_cache`` False: only the logits are wanted (nothing will be appended to this state: serving's
        decision position, whose state depends on the moment asked): no keys and values are copied out, and the
        returned state has none (empty ``keys`` and ``values``). ValueError naming the argument for shapes or
        actions that do not fit; ``state`` is not changed."""
        window = self._require_window()
        rtg = np.asarray(returns_to_go, np.float32)
        states = np.asarray(states, np.float32)
        actions = np.asarray(actions)
        timesteps = np.asarray(timesteps)
        B = state.batch_size
        if rtg.ndim != 2 or rtg.shape[0] != B or rtg.shape[1] < 1:
            raise ValueError(f"returns_to_go must be [{B}, m] with m >= 1, got shape {rtg.shape}")
        m = rtg.shape[1]
        for name, value in (("actions", actions), ("timesteps", timesteps)):
            if value.shape != (B, m) or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"{name} must be an integer array [{B}, {m}], got {value.dtype} {value.shape}")
        F = self.concept_head.concept_features if self.scores_unseen_concepts else None
        if states.ndim != 3 or states.shape[:2] != (B, m) or (
                states.shape[2] != self.state_dim if F is None else states.shape[2] < self.state_dim or
                states.shape[2] % F):
            raise ValueError(f"states must be [{B}, {m}, {self.state_dim}{' or more' if F else ''}], got shape "
                             f"{states.shape}")
        limit = states.shape[2] // F if F else self.action_dim
        if actions.min() < 0 or actions.max() >= limit:
            raise ValueError(f"actions must lie in [0, {limit}), got [{actions.min()}, {actions.max()}]")
        H = self.embed_timestep.shape[1]
        # the new tokens (a, R, s) per timestep; an action token has its own step's time: the one before
        before = np.concatenate((state.timesteps[:, None], timesteps[:, :-1]), axis=1)
        x = np.empty((B, m, 3, H), np.float32)
        x[:, :, 0] = self._embed_actions(actions)
        x[:, :, 0] += self._time(before)
        self._return_tokens(rtg, x[:, :, 1])
        self._state_tokens(states, x[:, :, 2])
        x[:, :, 1:] += self._time(timesteps)[:, :, None]
        x = self.embed_ln(x.reshape(B, 3 * m, H))
        n, past = 3 * m, state.cached_tokens
        bias = self._step_bias(past, n, state.valid)
        keep = slice(max(0, past + n - (window - 1)), past + n)
        valid = None if state.valid is None else np.concatenate(
            (state.valid, np.ones((B, n), bool)), axis=1)[:, keep]
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            cached = (state.keys[i], state.values[i])
            if i == len(self.blocks) - 1 and not logits:
                kv = block.keys_values(x, cached, keep)
            else:
                x, kv = block(x, bias, slice(n - 1, n) if i == len(self.blocks) - 1 else None, cached,
                              keep if keep_cache else None)
            if keep_cache:
                keys.append(kv[0])
                values.append(kv[1])
        out = self._heads(x[:, 0], states[:, -1]) if logits else None
        return StepState(keys=tuple(keys), values=tuple(values), valid=valid if keep_cache else None,
                         timesteps=timesteps[:, -1].astype(np.int64), logits=out)

    def _require_window(self) -> int:
        if self.attention_window is None:
            raise ValueError("the per-step path needs a model trained with attention_window (dt_lite_config.json); "
                             "this one attends to its whole context: use select_action")
        return self.attention_window

    def _step_bias(self, past: int, n: int, valid: np.ndarray | None) -> np.ndarray:
        """[n, past + n] additive mask of n new tokens after ``past`` cached ones (cached per thread): new token i
        (position past + i) sees positions j <= past + i within the window; with ``valid`` (bool [B, past], False
        for a padded cached token) [B, 1, n, past + n]."""
        cache = self._local.__dict__.setdefault("step", {})
        if (past, n) not in cache:
            query = past + np.arange(n)[:, None]
            key = np.arange(past + n)[None, :]
            allowed = (key <= query) & (query - key < self.attention_window)
            cache[past, n] = np.where(allowed, np.float32(0), np.float32(-np.inf))
        bias = cache[past, n]
        if valid is None:
            return bias
        padded = np.concatenate((~valid, np.zeros((valid.shape[0], n), bool)), axis=1)  # [B, past + n]
        return np.where(padded[:, None, None, :], np.float32(-np.inf), bias)

    def _embed_actions(self, actions: np.ndarray) -> np.ndarray:
        """[B, T'] action indices -> [B, T', H]; an index >= action_dim (a concept added after training) gets the
        trained actions' mean embedding."""
        if not self.scores_unseen_concepts or actions.size == 0 or actions.max() < self.action_dim:
            return self.embed_action[actions]
        unseen = actions >= self.action_dim
        out = self.embed_action[np.where(unseen, 0, actions)]
        out[unseen] = self.unseen_action
        return out

    def _check_inputs(self, rtg: np.ndarray, states: np.ndarray, actions: np.ndarray, timesteps: np.ndarray,
                      attention_mask: Any, last_only: bool) -> tuple[int, int]:
        if rtg.ndim != 2:
            raise ValueError(f"returns_to_go must be [B, T], got shape {rtg.shape}")
        B, T = rtg.shape
        if not 1 <= T <= self.context_length:
            raise ValueError(f"T must be between 1 and context_length {self.context_length}, got {T}")
        S = self.state_dim
        if self.scores_unseen_concepts:  # C' >= action_dim concepts of concept_features each
            F = self.concept_head.concept_features
            if states.ndim != 3 or states.shape[:2] != (B, T) or states.shape[2] < S or states.shape[2] % F:
                raise ValueError(f"states must be [{B}, {T}, {F} x C'] with C' >= {self.action_dim} concepts, "
                                 f"got shape {states.shape}")
        elif states.shape != (B, T, S):
            raise ValueError(f"states must be [{B}, {T}, {S}], got shape {states.shape}")
        action_limit = states.shape[2] // self.concept_head.concept_features if self.scores_unseen_concepts \
            else self.action_dim
        for name, value in (("actions", actions), ("timesteps", timesteps), ("attention_mask", attention_mask)):
            if value is not None and np.shape(value) != (B, T):
                raise ValueError(f"{name} must be [{B}, {T}], got shape {np.shape(value)}")
        if not np.issubdtype(actions.dtype, np.integer) or not np.issubdtype(timesteps.dtype, np.integer):
            raise ValueError("actions and timesteps must be integer arrays")
        used = actions[:, :-1] if last_only else actions
        if used.size and (used.min() < 0 or used.max() >= action_limit):
            raise ValueError(f"actions must lie in [0, {action_limit}), got [{used.min()}, {used.max()}]")
        return B, T

    def action_logits(self, returns_to_go: Any, states: Any, actions: Any, timesteps: Any,
                      attention_mask: Any = None) -> np.ndarray:
        """float32 [B, T, A] logits at every state token; the inputs as DecisionTransformer.forward's (A = C' when
        states hold C' > action_dim concepts and the model scores unseen concepts; see the module docstring)."""
        return self._forward(returns_to_go, states, actions, timesteps, attention_mask, last_only=False)

    def last_logits(self, returns_to_go: Any, states: Any, actions: Any, timesteps: Any,
                    attention_mask: Any = None) -> np.ndarray:
        """float32 [B, A] logits of the last state token (the inputs as `action_logits`'; ``actions[:, -1]`` is not
        read), computing only what that token needs: `select_action`'s full forward, for any model."""
        return self._forward(returns_to_go, states, actions, timesteps, attention_mask, last_only=True)

    def select_action(
        self,
        returns_to_go: Any,
        states: Any,
        actions: Any,
        timesteps: Any,
        attention_mask: Any = None,
        *,
        candidates: np.ndarray | Sequence[int] | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The next action for each of B sequences, from the last position: (actions int64 [B], probs float32 [B, A]).

        `actions[:, -1]` is the (unknown) current action: any valid index, it is not read.
        temperature None or 0 picks the argmax; > 0 samples from softmax(logits / temperature).
        probs is softmax(logits / t) with t the given temperature, else the config's (1.0 if 0), restricted to
        `candidates` (bool [A] or [B, A], or a list of indices) and to the top_k logits (top_k, else the
        config's top_k; ties at the k-th logit are all kept); the chosen action always has probs > 0.
        """
        logits = self.last_logits(returns_to_go, states, actions, timesteps, attention_mask)
        return self.choose(logits, candidates=candidates, temperature=temperature, top_k=top_k, rng=rng)

    def choose(self, logits: np.ndarray, *, candidates: np.ndarray | Sequence[int] | None = None,
               temperature: float | None = None, top_k: int | None = None,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`select_action`'s choice from last-state-token logits float32 [B, A] computed elsewhere (the per-step
        path: StepState.logits, HistoryStepCache): (actions int64 [B], probs float32 [B, A]), the same rules.
        ``logits`` is changed in place (masked entries set to -inf)."""
        B, A = logits.shape
        if candidates is not None:
            allowed = np.zeros((B, A), dtype=bool)
            cand = np.asarray(candidates)
            if cand.dtype == bool:
                if cand.shape not in ((A,), (B, A)):
                    raise ValueError(f"candidates as a mask must be [{A}] or [{B}, {A}], got shape {cand.shape}")
                allowed[:] = cand
            else:
                if cand.size and (cand.min() < 0 or cand.max() >= A):
                    raise ValueError(f"candidate indices must lie in [0, {A})")
                allowed[:, cand.astype(np.int64).ravel()] = True
            if not allowed.any(axis=1).all():
                raise ValueError("candidates leave no action to choose for some row")
            logits[~allowed] = -np.inf
        k = top_k if top_k is not None else self.config.get("top_k")
        if k is not None and k < A:
            kth = np.partition(logits, A - k, axis=1)[:, A - k, None]  # k-th largest per row
            logits[logits < kth] = -np.inf
        t = temperature if temperature else (self.config.get("temperature") or 1.0)
        z = logits / np.float32(t)
        z -= z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        if not temperature:
            return logits.argmax(axis=1).astype(np.int64), probs
        rng = np.random.default_rng() if rng is None else rng
        cdf = np.cumsum(probs, axis=1)
        u = rng.random((B, 1)) * cdf[:, -1:]
        chosen = np.minimum((cdf <= u).sum(axis=1), A - 1)
        # float rounding could land u on a zero-probability tail; step back to the last allowed action
        zero = probs[np.arange(B), chosen] == 0
        if zero.any():
            chosen[zero] = (probs[zero] > 0).cumsum(axis=1).argmax(axis=1)
        return chosen.astype(np.int64), probs
