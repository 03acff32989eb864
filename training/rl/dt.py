"""Decision Transformer (Chen et al. 2021) over curriculum trajectories, in PyTorch.

nanoGPT-style: a config dataclass and small modules. The action is read from the state token as in the original
(a linear head over concepts) plus, when the states are per-concept feature groups (the encoder's), a concept
head: one small MLP that scores each concept from the state token and that concept's own features, so that a
rule such as "the concept whose recall is closest to a target" is as easy to learn as "the lowest recall".

The state token: with ``state_token="summary"`` (what the trainer builds) it embeds a fixed-size summary of the
per-concept features (``StateSummary``; the formulas are in model_config.py), so the transformer costs the same
for 20 concepts or 1,000; ``"linear"`` (models exported before) embeds all 4 x C numbers.

`training/rl/dtlite.py` is its NumPy twin, block for block with the same names; change one, change the other
(tests/training/rl/test_dtlite.py checks them).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import IO, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import read_checkpoint
from .model_config import (
    DEFAULT_CONTEXT_LENGTH, DEFAULT_HIDDEN_DIM, DEFAULT_NUM_HEADS, DEFAULT_NUM_LAYERS, SUMMARY_COUNT_SCALE,
    SUMMARY_RECALL, SUMMARY_RECALL_THRESHOLDS, SUMMARY_REVIEWS, UNREVIEWED_FEATURES, check_model_config,
    state_token_input_dim,
)

LAYER_NORM_EPS = 1e-5  # DTLite uses the same constant
DROPOUT_BITS = 15  # Dropout's mask on the CPU: one element from 15 random bits


def dropout_mask(shape: torch.Size | tuple[int, ...], threshold: int, *, device: torch.device | str) -> torch.Tensor:
    """bool ``shape``: True (keep) with probability 1 - threshold / 2**15, each element independent.

    Four elements from one 64-bit draw of torch's generator (``Tensor.random_`` on int64 gives 63 uniform bits;
    each element keeps the low 15 bits of its 16), so a seed gives the same mask. On the CPU this costs about a
    quarter of ``torch.bernoulli_``'s one draw per element (which is also serial: 17% of a default training step at
    two threads before; bench/README.md, training_recipe.py). ValueError unless 0 <= threshold < 2**15.
    """
    if not 0 <= threshold < 1 << DROPOUT_BITS:
        raise ValueError(f"threshold must lie in [0, {(1 << DROPOUT_BITS) - 1}], got {threshold}")
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()
    return (words.view(torch.int16)[:n] & ((1 << DROPOUT_BITS) - 1)).ge(threshold).view(shape)


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014; ``nn.Dropout``'s function): in training each element is zeroed
    with probability p and the others scaled by 1 / (1 - p); the identity in eval mode, so inference (DTLite, the
    ONNX export) never sees it.

    On the CPU the mask comes from ``dropout_mask`` (p rounded to a multiple of 2**-15, at most 1 - 2**-15: 0.1 ->
    3277 / 32768, the scale 32768 / 29491, so the expectation is kept exactly); on other devices it is ``F.dropout`` (a fused kernel
    there). x any float tensor -> the same shape and dtype. ValueError unless 0 <= p < 1.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = float(p)
        self.threshold = min(round(p * (1 << DROPOUT_BITS)), (1 << DROPOUT_BITS) - 1)
        self.scale = (1 << DROPOUT_BITS) / ((1 << DROPOUT_BITS) - self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep = dropout_mask(x.shape, self.threshold, device=x.device)
        return x * keep.to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@dataclass(frozen=True)
class DTConfig:
    state_dim: int
    action_dim: int
    # The size train_crl_policy trains, declared in model_config.py (no PyTorch there: the admin's launch form bounds
    # the attention window by it). Every export states its own size, so older ones load.
    hidden_dim: int = DEFAULT_HIDDEN_DIM
    num_layers: int = DEFAULT_NUM_LAYERS
    num_heads: int = DEFAULT_NUM_HEADS
    context_length: int = DEFAULT_CONTEXT_LENGTH  # K timesteps -> 3K tokens
    max_timestep: int = 1024  # larger timesteps are clamped to max_timestep - 1 (here and in DTLite)
    dropout: float = 0.1
    # Returns-to-go are given in natural units and divided by this inside the model. None: the trainer
    # picks it from the data (max |return-to-go|); a model built directly with None uses 1.0.
    return_scale: float | None = None
    # > 0: the states are action_dim groups of concept_features numbers (concept-major, as the encoder lays them
    # out) and a concept head adds to each concept's logit a score of (state token, that concept's features).
    # 0: the original linear head only (models trained before the concept head).
    concept_features: int = 0
    concept_head_dim: int = 64
    # "summary": the state token embeds StateSummary(states) (fixed size); "linear": all S numbers (older exports)
    state_token: str = "linear"
    # None: full causal attention (the original). W: each token attends to the last W tokens only (itself and the
    # W - 1 before it), so a token's keys and values never change once computed and DTLite can serve a learner step
    # by step from cached keys and values (dtlite.DTLite.step); W <= model_config.max_attention_window keeps that
    # exact. Set at training time (`train_crl_policy --attention-window W`): the model learns with the window.
    attention_window: int | None = None

    def __post_init__(self) -> None:
        try:
            check_model_config(asdict(self))
        except ValueError as exc:
            raise ValueError(f"DTConfig.{exc}") from None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.c_attn = nn.Linear(config.hidden_dim, 3 * config.hidden_dim)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.hidden_dim, config.hidden_dim)
        self.dropout = config.dropout
        self.attn_dropout = Dropout(config.dropout)  # on the attention weights, where SDPA's own is not used
        self.resid_dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, H = x.shape  # L = 3T tokens
        q, k, v = self.c_attn(x).split(H, dim=2)
        # [B, L, H] -> [B, heads, L, H / heads]
        q = q.view(B, L, self.num_heads, H // self.num_heads).transpose(1, 2)
        k = k.view(B, L, self.num_heads, H // self.num_heads).transpose(1, 2)
        v = v.view(B, L, self.num_heads, H // self.num_heads).transpose(1, 2)
        dropout_p = self.dropout if self.training else 0.0
        if dropout_p > 0.0 and x.device.type == "cpu":
            # SDPA's CPU dropout draws one bernoulli number per weight; the same attention by hand, with Dropout's
            # mask (Vaswani et al. 2017: softmax(q k^T / sqrt(d)) v)
            if attn_mask is None:
                attn_mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            att = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))
            att = att.masked_fill_(~attn_mask, float("-inf")).softmax(dim=-1)
            y = torch.matmul(self.attn_dropout(att), v)
        elif attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, L, H)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_dim, 4 * config.hidden_dim)
        # GPT-2's tanh GELU (as in the original DT): NumPy has no erf, and DTLite must match exactly.
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.hidden_dim, config.hidden_dim)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_dim, eps=LAYER_NORM_EPS)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class ConceptHead(nn.Module):
    """Scores every concept from the state token's output h and the concept's own features x_c:
    ``score_c = c_out . gelu(c_state(h) + c_concept(x_c))``, one small MLP shared by all concepts.

    A linear head on h can rank concepts by a linear function of their features (lowest recall first), but not
    by a non-linear one (recall closest to a target, a gain that peaks in between); this one can, with the same
    weights for any number of concepts.
    """

    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.concept_features = config.concept_features
        self.c_state = nn.Linear(config.hidden_dim, config.concept_head_dim)
        self.c_concept = nn.Linear(config.concept_features, config.concept_head_dim, bias=False)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_out = nn.Linear(config.concept_head_dim, 1, bias=False)
        self.register_buffer("unreviewed", torch.tensor(UNREVIEWED_FEATURES, dtype=torch.float32), persistent=False)

    def forward(self, h: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        B, T, _ = h.shape
        features = states.reshape(B, T, -1, self.concept_features)  # [B, T, A, F]
        # the plain formula on GPUs, under autocast, and when traced (ONNX export: ConceptScores' blocks depend on the
        # values of the traced inputs, so a trace of them would hold only for those)
        if h.device.type != "cpu" or torch.is_autocast_enabled("cuda") or torch.jit.is_tracing():
            z = self.c_state(h).unsqueeze(2) + self.c_concept(features)  # [B, T, A, D]
            return self.c_out(self.gelu(z)).squeeze(-1)  # [B, T, A]
        # The same function, never holding [B, T, A, D] (ConceptScores)
        A = features.shape[2]
        shared = self.unreviewed if self.concept_features == len(UNREVIEWED_FEATURES) else None
        base = self.c_state(h).reshape(B * T, -1)
        with torch.autocast("cpu", enabled=False):  # under CPU bfloat16 autocast, the blocks stay in float32
            scores = ConceptScores.apply(base.float(), features.reshape(B * T, A, -1).float(),
                                         self.c_concept.weight, self.c_out.weight, shared)
        return scores.reshape(B, T, A)


CONCEPT_BLOCK_CELLS = 1 << 18  # cells of the pre-activation per block: 1 MiB of float32 stays in the core's cache


class ConceptScores(torch.autograd.Function):
    """``score[r, c] = c_out . gelu_tanh(base[r] + c_concept_w @ x[r, c])`` (ConceptHead's formula) for the CPU:
    forward and backward in blocks of ~CONCEPT_BLOCK_CELLS pre-activation cells (the backward recomputes a block's
    pre-activation instead of keeping it), and a concept whose features equal ``shared`` (float32 [F] or None) scored
    once per row r, since its score depends on (base[r], x[r, c]) only.

    base float32 [R, D] (``c_state(h)``, with its bias); x float32 [R, A, F] (no gradient); c_concept_w [D, F];
    c_out_w [1, D] -> scores float32 [R, A]. Eager autograd would hold three [R, A, D] tensors for the backward
    (600 MB for a batch of 64 x 20 at 610 concepts) and stream them through memory several times. The gradients
    are autograd's: gelu's own backward kernel and sums of the same terms (for the shared vector, the row's grads
    summed before gelu's backward, which is linear in them); tests/training/rl/test_dt.py compares them.
    """

    @staticmethod
    def _blocks(base, x, c_concept_w, shared):
        """The scored (row, concept) cells: (flat index into [R * A], row, features [M, F]), and the shared
        vector's pre-activation per row [R, D] (None without one)."""
        R, A, Fx = x.shape
        same = (x == shared).all(-1) if shared is not None else None  # [R, A]
        if same is None or not bool(same.any()):
            flat = torch.arange(R * A)
            return flat, flat // A, x.reshape(R * A, Fx), None, None
        own = ~same.reshape(-1)
        flat = own.nonzero().squeeze(1)
        z_shared = base + torch.matmul(shared, c_concept_w.t())  # [R, D]
        return flat, flat // A, x.reshape(R * A, Fx)[flat], z_shared, same

    @staticmethod
    def forward(ctx, base: torch.Tensor, x: torch.Tensor, c_concept_w: torch.Tensor, c_out_w: torch.Tensor,
                shared: torch.Tensor | None) -> torch.Tensor:
        R, A, _ = x.shape
        D = base.shape[1]
        flat, row, cells, z_shared, _ = ConceptScores._blocks(base, x, c_concept_w, shared)
        w_t, out = c_concept_w.t(), c_out_w[0]
        if z_shared is None:
            scores = base.new_empty(R * A)
        else:  # every cell the shared vector's score, then the others overwritten
            scores = torch.matmul(F.gelu(z_shared, approximate="tanh"), out)[:, None].expand(R, A).reshape(-1)
        step = max(1, CONCEPT_BLOCK_CELLS // D)
        for start in range(0, len(flat), step):
            block = slice(start, start + step)
            z = torch.addmm(base[row[block]], cells[block], w_t)  # [m, D]
            scores[flat[block]] = torch.matmul(F.gelu(z, approximate="tanh"), out)
        ctx.save_for_backward(base, x, c_concept_w, c_out_w, shared)
        return scores.reshape(R, A)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        base, x, c_concept_w, c_out_w, shared = ctx.saved_tensors
        R, A, _ = x.shape
        D = base.shape[1]
        flat, row, cells, z_shared, same = ConceptScores._blocks(base, x, c_concept_w, shared)
        w_t, out = c_concept_w.t(), c_out_w[0]
        grad = grad.reshape(-1)
        d_base = torch.zeros_like(base)
        d_concept = torch.zeros_like(c_concept_w)
        d_out = torch.zeros_like(out)
        if z_shared is not None:
            g_shared = torch.where(same, grad.reshape(R, A), 0.0).sum(1)  # [R]
            d_out += g_shared.matmul(F.gelu(z_shared, approximate="tanh"))
            dz = torch.ops.aten.gelu_backward(g_shared[:, None] * out, z_shared, approximate="tanh")  # [R, D]
            d_base += dz
            d_concept += torch.outer(dz.sum(0), shared)
        step = max(1, CONCEPT_BLOCK_CELLS // D)
        for start in range(0, len(flat), step):
            block = slice(start, start + step)
            z = torch.addmm(base[row[block]], cells[block], w_t)
            g = grad[flat[block]]  # [m]
            d_out += g.matmul(F.gelu(z, approximate="tanh"))
            dz = torch.ops.aten.gelu_backward(g[:, None] * out, z, approximate="tanh")  # [m, D]
            d_base.index_add_(0, row[block], dz)
            d_concept += dz.t().matmul(cells[block])
        return d_base, None, d_concept, d_out[None], None


class StateSummary(nn.Module):
    """states [B, T, C x F] -> [B, T, summary_dim(F)]: the fixed-size summary the state token embeds (no weights;
    the formulas and their order are in model_config.py)."""

    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.concept_features = config.concept_features
        self.register_buffer("thresholds", torch.tensor(SUMMARY_RECALL_THRESHOLDS, dtype=torch.float32),
                             persistent=False)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        B, T, _ = states.shape
        x = states.float().reshape(B, T, -1, self.concept_features)  # [B, T, C, F]
        C = x.shape[2]
        reviewed = x[..., SUMMARY_REVIEWS] > 0  # [B, T, C]
        n = reviewed.sum(-1, keepdim=True).float()  # [B, T, 1]
        any_reviewed = n > 0
        due = (x[..., SUMMARY_RECALL, None] < self.thresholds) & reviewed[..., None]  # [B, T, C, R]
        mask = reviewed[..., None]  # [B, T, C, 1]
        mean_all = x.sum(2) / C  # [B, T, F]
        mean_reviewed = torch.where(mask, x, 0.0).sum(2) / n.clamp(min=1.0)
        min_reviewed = torch.where(mask, x, float("inf")).amin(2)
        max_reviewed = torch.where(mask, x, float("-inf")).amax(2)
        return torch.cat([
            n / C,
            torch.log1p(n) / SUMMARY_COUNT_SCALE,
            due.float().sum(2) / C,
            mean_all,
            mean_reviewed,
            torch.where(any_reviewed, min_reviewed, 0.0),
            torch.where(any_reviewed, max_reviewed, 0.0),
        ], dim=-1)


def token_attention_mask(attention_mask: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """[B, T] timestep mask (1 valid, 0 pad) -> boolean [B, 1, 3T, 3T] attention mask (True = may attend).

    Causal, and no query attends to a padded key, except that every token attends to itself: a padded
    query then has one key instead of none, so its row stays finite (no NaN) while valid rows never see
    a pad. With ``window`` W (DTConfig.attention_window), query i sees keys j with i - W < j <= i only.
    """
    B, T = attention_mask.shape
    keys = (attention_mask != 0).repeat_interleave(3, dim=1)  # [B, 3T]
    L = 3 * T
    # from comparisons of positions, not tril/eye of booleans: ONNX Runtime has no boolean EyeLike (onnx_export.py)
    position = torch.arange(L, device=attention_mask.device)
    causal = position[:, None] >= position[None, :]
    if window is not None:
        causal = causal & (position[:, None] - position[None, :] < window)
    eye = position[:, None] == position[None, :]
    return (causal & (keys[:, None, :] | eye))[:, None]  # [B, 1, L, L]


class DecisionTransformer(nn.Module):
    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        if config.return_scale is None:
            config = replace(config, return_scale=1.0)
        self.config = config
        H = config.hidden_dim
        self.embed_timestep = nn.Embedding(config.max_timestep, H)
        self.embed_return = nn.Linear(1, H)
        self.state_summary = StateSummary(config) if config.state_token == "summary" else None
        self.embed_state = nn.Linear(state_token_input_dim(asdict(config)), H)
        self.embed_action = nn.Embedding(config.action_dim, H)
        self.embed_ln = nn.LayerNorm(H, eps=LAYER_NORM_EPS)
        self.drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(H, eps=LAYER_NORM_EPS)
        self.predict_action = nn.Linear(H, config.action_dim)
        self.concept_head = ConceptHead(config) if config.concept_features else None
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by depth so the residual stream does not grow with layers
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        returns_to_go: torch.Tensor,  # float32 [B, T], natural units
        states: torch.Tensor,  # float32 [B, T, S]
        actions: torch.Tensor,  # int64 [B, T]; the last one is never seen by the last state token
        timesteps: torch.Tensor,  # int64 [B, T]
        attention_mask: torch.Tensor | None = None,  # int64 [B, T], 1 valid, 0 left padding
    ) -> torch.Tensor:  # float32 [B, T, A] action logits, read from each state token
        # positional arguments only: the ONNX exporter (onnx_export.py) passes every parameter positionally
        return self.action_logits(returns_to_go, states, actions, timesteps, attention_mask)

    def action_logits(
        self,
        returns_to_go: torch.Tensor,
        states: torch.Tensor,
        actions: torch.Tensor,
        timesteps: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        last_only: bool = False,
        whole_episode: bool = False,
    ) -> torch.Tensor:
        """float32 [B, T, A] action logits read from each state token (Chen et al. 2021's tokens R, s, a per step);
        the inputs as `forward`'s, which calls this.

        ``last_only``: [B, A], the last state token's only; the final layer norm and the heads run on that token
        alone (the concept head, the costly part, on 1 / T of the tokens). ``whole_episode``: T may exceed
        context_length, for a model with ``attention_window``: its receptive field through all blocks,
        (W - 1) x num_layers tokens back, fits in the context (model_config.max_attention_window), so each state
        token's logits equal those of a forward on the context_length steps that end there, the policy's decision
        at that step (DTLite's per-step path rests on the same bound): one forward gives a whole episode's.
        ValueError for T > context_length otherwise."""
        B, T = actions.shape
        window = self.config.attention_window
        if T > self.config.context_length and not (whole_episode and window is not None):
            raise ValueError(f"sequence length {T} exceeds context_length {self.config.context_length}"
                             + (" (whole episodes need a model with attention_window)" if whole_episode else ""))
        time = self.embed_timestep(timesteps.clamp(0, self.config.max_timestep - 1))  # [B, T, H]
        rtg = (returns_to_go / self.config.return_scale).unsqueeze(-1)
        r_tok = self.embed_return(rtg) + time
        token_input = states if self.state_summary is None else self.state_summary(states)
        s_tok = self.embed_state(token_input) + time
        a_tok = self.embed_action(actions) + time
        # interleave (R_1, s_1, a_1, R_2, ...): [B, T, 3, H] -> [B, 3T, H]
        x = torch.stack((r_tok, s_tok, a_tok), dim=2).reshape(B, 3 * T, -1)
        x = self.drop(self.embed_ln(x))
        if attention_mask is None and window is not None:  # the window needs a mask even without padding
            attention_mask = torch.ones_like(actions)
        attn_mask = None if attention_mask is None else token_attention_mask(attention_mask, window)
        for block in self.blocks:
            x = block(x, attn_mask)
        if last_only:  # the last state token ([R, s, a] per step: second to last)
            h, states = self.ln_f(x[:, -2:-1]), states[:, -1:]
        else:
            h = self.ln_f(x)[:, 1::3]  # state tokens only
        logits = self.predict_action(h)
        if self.concept_head is not None:
            logits = logits + self.concept_head(h, states)
        return logits.float()[:, 0] if last_only else logits.float()

    def checkpoint_config(self) -> dict[str, Any]:
        """The config as plain Python types, for `dt_model.pt` and `dt_lite_config.json`."""
        return asdict(self.config)

    @classmethod
    def from_checkpoint(cls, source: str | os.PathLike | IO[bytes] | bytes) -> DecisionTransformer:
        """A model from `dt_model.pt` (path, bytes or file object), in eval mode on the CPU."""
        checkpoint = read_checkpoint(source)
        model = cls(DTConfig(**checkpoint["config"]))
        model.load_state_dict(checkpoint["model"])
        return model.eval()
