"""DTLite: the Decision Transformer's inference in NumPy only, for serving without torch.

Read it beside `training/rl/dt.py`: the same blocks under the same names, computing the same numbers
(max abs difference <= 1e-4, checked by tests/training/rl/test_dtlite.py). `select_action` computes only
what the last state token needs, which is all a recommendation uses.

Concepts added after training: a model with the summary state token (``scores_unseen_concepts``) also takes
states of C' > action_dim concepts (the trained ones first, in position order). The summary then covers all C'
concepts; concept c >= action_dim is scored from its own features by the concept head, plus the linear head's
average over the trained concepts (its weights know nothing of c, so the prior is a typical concept's), and an
action c >= action_dim in the context is embedded as the average of the trained actions' embeddings.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.rl.artifacts import Source, check_weights, verify_artifacts
from training.rl.model_config import (
    SUMMARY_COUNT_SCALE, SUMMARY_RECALL, SUMMARY_RECALL_THRESHOLDS, SUMMARY_REVIEWS, check_model_config,
    scores_unseen_concepts,
)

LAYER_NORM_EPS = 1e-5  # as dt.LAYER_NORM_EPS
_GELU_C = np.float32(np.sqrt(2.0 / np.pi))


def _linear(w: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    # torch stores Linear weights [out, in]; keep [in, out] contiguous so x @ W needs no transpose per call
    return np.array(w[name + ".weight"].T, np.float32, order="C"), np.array(w[name + ".bias"], np.float32)


def _row_sums(x: np.ndarray) -> np.ndarray:
    # a matrix-vector product: several times faster than x.sum(axis=-1) for short rows
    return x @ np.ones(x.shape[-1], np.float32)


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
    def __init__(self, w: Mapping[str, np.ndarray], name: str) -> None:
        self.weight = np.asarray(w[name + ".weight"], np.float32)
        self.bias = np.asarray(w[name + ".bias"], np.float32)
        self.inv_n = np.float32(1.0 / self.weight.shape[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean = _row_sums(x)
        mean *= self.inv_n
        xc = x - mean[..., None]
        var = np.einsum("...i,...i->...", xc, xc)  # one pass, no xc * xc temporary
        var *= self.inv_n
        var += np.float32(LAYER_NORM_EPS)
        rstd = np.sqrt(var, out=var)
        np.divide(np.float32(1.0), rstd, out=rstd)
        xc *= rstd[..., None]  # multiply by 1 / std, as torch does
        xc *= self.weight
        xc += self.bias
        return xc


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
    def __init__(self, w: Mapping[str, np.ndarray], name: str, config: Mapping[str, Any]) -> None:
        self.num_heads = config["num_heads"]
        self.c_attn_w, self.c_attn_b = _linear(w, name + ".c_attn")  # [H, 3H]: q | k | v
        H = self.c_attn_w.shape[0]
        # q k^T / sqrt(d): fold 1 / sqrt(d) into the query projection once, not into every score matrix
        scale = np.float32(1.0 / np.sqrt(H // self.num_heads))
        self.c_attn_w[:, :H] *= scale
        self.c_attn_b[:H] *= scale
        # the last-row path projects q for one token and k, v for all: keep those halves contiguous too
        self.q_w, self.q_b = np.ascontiguousarray(self.c_attn_w[:, :H]), self.c_attn_b[:H]
        self.kv_w, self.kv_b = np.ascontiguousarray(self.c_attn_w[:, H:]), self.c_attn_b[H:]
        self.c_proj_w, self.c_proj_b = _linear(w, name + ".c_proj")

    def __call__(self, x: np.ndarray, bias: np.ndarray, query: int | None = None) -> np.ndarray:
        B, L, H = x.shape
        heads, d = self.num_heads, H // self.num_heads
        if query is not None:  # one query row (keys and values from all rows): [B, 1, H]
            q = x[:, query:query + 1] @ self.q_w
            q += self.q_b
            kv = x @ self.kv_w
            kv += self.kv_b
            k, v = kv[..., :H], kv[..., H:]
            bias = bias[..., query:query + 1, :]
        else:
            qkv = x @ self.c_attn_w
            qkv += self.c_attn_b
            q, k, v = qkv[..., :H], qkv[..., H:2 * H], qkv[..., 2 * H:]
        Lq = q.shape[1]
        q = q.reshape(B, Lq, heads, d).transpose(0, 2, 1, 3)  # [B, heads, Lq, d], already scaled
        k = k.reshape(B, L, heads, d).transpose(0, 2, 3, 1)  # [B, heads, d, L]
        v = v.reshape(B, L, heads, d).transpose(0, 2, 1, 3)  # [B, heads, L, d]
        att = q @ k  # [B, heads, Lq, L]
        att += bias  # 0 where allowed, -inf elsewhere; the diagonal is always allowed, so no row is empty
        y = (_softmax(att) @ v).transpose(0, 2, 1, 3).reshape(B, Lq, H)
        y = y @ self.c_proj_w
        y += self.c_proj_b
        return y


class MLP:
    def __init__(self, w: Mapping[str, np.ndarray], name: str) -> None:
        self.c_fc_w, self.c_fc_b = _linear(w, name + ".c_fc")
        self.c_proj_w, self.c_proj_b = _linear(w, name + ".c_proj")
        self.c_proj_w *= np.float32(0.5)  # GELU's factor 0.5, folded in (exact: a power of two)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x @ self.c_fc_w
        h += self.c_fc_b
        y = _twice_gelu(h) @ self.c_proj_w  # GELU's 0.5 is in c_proj_w
        y += self.c_proj_b
        return y


class Block:
    def __init__(self, w: Mapping[str, np.ndarray], name: str, config: Mapping[str, Any]) -> None:
        self.ln_1 = LayerNorm(w, name + ".ln_1")
        self.attn = CausalSelfAttention(w, name + ".attn", config)
        self.ln_2 = LayerNorm(w, name + ".ln_2")
        self.mlp = MLP(w, name + ".mlp")

    def __call__(self, x: np.ndarray, bias: np.ndarray, query: int | None = None) -> np.ndarray:
        """x [B, L, H] -> [B, L, H], or [B, 1, H]: only row `query`'s output when it is given."""
        y = self.attn(self.ln_1(x), bias, query)
        y += x if query is None else x[:, query:query + 1]
        y += self.mlp(self.ln_2(y))
        return y


class ConceptHead:
    def __init__(self, w: Mapping[str, np.ndarray], name: str, config: Mapping[str, Any]) -> None:
        self.concept_features = config["concept_features"]
        self.c_state_w, self.c_state_b = _linear(w, name + ".c_state")  # [H, D]
        self.c_concept_w = np.array(w[name + ".c_concept.weight"].T, np.float32, order="C")  # [F, D]
        # [D]; GELU's factor 0.5 folded in (exact: a power of two)
        self.c_out_w = np.array(w[name + ".c_out.weight"][0], np.float32) * np.float32(0.5)

    def __call__(self, h: np.ndarray, states: np.ndarray) -> np.ndarray:
        """h [..., H], states [..., S] -> scores [..., A]."""
        features = states.reshape(states.shape[:-1] + (-1, self.concept_features))  # [..., A, F]
        z = features @ self.c_concept_w  # [..., A, D]
        base = h @ self.c_state_w
        base += self.c_state_b
        z += base[..., None, :]
        return _twice_gelu(z) @ self.c_out_w  # GELU's 0.5 is in c_out_w


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
        due = np.stack([(recall < threshold).sum(-1, dtype=np.float32) for threshold in self.thresholds], axis=-1)
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


class DTLite:
    """A Decision Transformer for inference; thread-safe (per-thread scratch state only)."""

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
        self.predict_action_w, self.predict_action_b = _linear(w, "predict_action")
        self.concept_head = ConceptHead(w, "concept_head", config) if config.get("concept_features") else None
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
        # [L, L] additive mask, cached per thread and length: 0 on and below the diagonal, -inf above
        cache = self._local.__dict__.setdefault("causal", {})
        if L not in cache:
            cache[L] = np.triu(np.full((L, L), -np.inf, np.float32), k=1)
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

    def _forward(self, returns_to_go: Any, states: Any, actions: Any, timesteps: Any,
                 attention_mask: Any, last_only: bool) -> np.ndarray:
        rtg = np.asarray(returns_to_go, np.float32)
        states = np.asarray(states, np.float32)
        actions = np.asarray(actions)
        timesteps = np.asarray(timesteps)
        B, T = self._check_inputs(rtg, states, actions, timesteps, attention_mask, last_only)
        H = self.embed_timestep.shape[1]
        query = 3 * T - 2 if last_only else None  # the last state token
        L = 3 * T
        if last_only and L % 4:
            # The last action token comes after the last state token, so it cannot change its answer:
            # skip it, except where 3T is a multiple of 4 (T = 20...): OpenBLAS's kernels work in blocks
            # of rows, and 60 rows measured ~10% faster than 59 (causally the extra row is invisible).
            L -= 1
        time = self.embed_timestep[np.clip(timesteps, 0, self.max_timestep - 1)]  # [B, T, H]
        x = np.empty((B, T, 3, H), np.float32)
        r_tok = x[:, :, 0]
        np.multiply((rtg / self.return_scale)[..., None], self.embed_return_w, out=r_tok)
        r_tok += self.embed_return_b
        token_input = states if self.state_summary is None else self.state_summary(states)
        np.matmul(token_input, self.embed_state_w, out=x[:, :, 1])
        x[:, :, 1] += self.embed_state_b
        if last_only:
            x[:, :-1, 2] = self._embed_actions(actions[:, :-1])
            x[:, -1, 2] = 0.0  # never seen by the last state token (see L above)
        else:
            x[:, :, 2] = self._embed_actions(actions)
        x += time[:, :, None]
        x = self.embed_ln(x.reshape(B, 3 * T, H)[:, :L])  # interleaved (R_1, s_1, a_1, R_2, ...)
        bias = self._bias(attention_mask, B, T, L)
        for block in self.blocks[:-1]:
            x = block(x, bias)
        x = self.blocks[-1](x, bias, query)
        x = self.ln_f(x[:, 0] if last_only else x[:, 1::3])  # state tokens only
        logits = x @ self.predict_action_w
        logits += self.predict_action_b
        if states.shape[-1] > self.state_dim:  # concepts added after training: a typical concept's linear score
            extra = (states.shape[-1] - self.state_dim) // self.concept_head.concept_features
            unseen = x @ self.unseen_predict_w + self.unseen_predict_b  # [..]
            logits = np.concatenate([logits, np.repeat(unseen[..., None], extra, axis=-1)], axis=-1)
        if self.concept_head is not None:
            logits += self.concept_head(x, states[:, -1] if last_only else states)
        return logits

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
        logits = self._forward(returns_to_go, states, actions, timesteps, attention_mask, last_only=True)
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
