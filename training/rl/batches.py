"""The trainer's batch builder (PyTorch): a dataset's arrays held as tensors on the training device once, and a batch
of windows built there by index arithmetic, its state tokens encoded in one vectorised step.

Per optimiser step only the B window ends (int64 [B], drawn on the host with the run's NumPy generator, so a seed
gives the batches of ``trainer.sample_windows``, the NumPy reference) go to the device; everything else is gathers,
one scatter-max and elementwise arithmetic on tensors already there, with fixed shapes (no Python per-sample loop and
no host-device synchronisation).

States of an extracted dataset (review_states.py) are rebuilt as ``ReviewStates.states`` does: the snapshot at or
before the row (or the episode's start), the replay of the rows since then (at most ``max_replay`` of them, the
dataset's largest gap, found once) as a scatter-max of row indices per concept, the stored memory values of each
concept's latest review gathered, and the PyTorch twin of ``StateEncoder.encode`` (the encoder's formulas, memory.py
and fsrs6.py, in float64 as there; tests/training/rl/test_batches.py checks the states against the NumPy ones).
A dataset that holds its states (format 1) has them on the device and gathers rows.
"""
from __future__ import annotations

import numpy as np
import torch

from .encoder import FEATURES_PER_CONCEPT, NEVER_REVIEWED_ELAPSED
from .encoder import fsrs6
from .encoder.memory import _ELAPSED_SCALE, _HOUR, _REVIEWS_SCALE, _STABILITY_SCALE
from .review_states import ReviewStates
from .trajectories import TrajectoryDataset


def draw_window_ends(rng: np.random.Generator, *, num_steps: int, batch_size: int) -> np.ndarray:
    """int64 [batch_size]: the dataset rows that end a batch's windows, uniform over its num_steps rows (every step
    equally likely to end a window). The one draw of both batch builders, so they see the same windows for a seed."""
    return rng.integers(0, num_steps, size=batch_size)


class BatchBuilder:
    """Windows [B, K] of a TrajectoryDataset built on ``device``; ``batch(ends)`` is ``trainer.sample_windows``'s
    batch for the same window ends, as tensors on the device.

    Holds on the device: returns_to_go float32 [N], actions int64 [N], timesteps int64 [N], episode_starts int64
    [E + 1]; and either the states float32 [N, S] (a dataset that holds them) or the review rows that rebuild them
    (t float64 [N], concept int64 [N], one [N] tensor per memory field, snapshot_rows int64 [M], snapshots int64
    [M, C]): about N x 60 + M x C x 8 bytes, e.g. 1.2M reviews of 1,000 concepts: ~70 MB + ~75 MB.
    """

    def __init__(self, dataset: TrajectoryDataset, *, context_length: int, device: str | torch.device = "cpu",
                 reuse_states: bool = False) -> None:
        self.device = torch.device(device)
        self.context_length = int(context_length)
        # reuse_states: the rebuilt states of each batch are written into one tensor kept here, so a batch's
        # "states" is overwritten by the next call (the trainer's loop is done with it by then); it saves writing
        # fresh memory each step (20 MB a batch of 64 x 20 at 1,000 concepts: a quarter of the builder's time there)
        self.reuse_states = bool(reuse_states)
        self.zero_by_index = self.device.type == "cpu"  # padded rows zeroed by index (else a masked fill, no sync)
        self._states_out: torch.Tensor | None = None
        self.num_steps = len(dataset.actions)

        def put(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array)).to(self.device, dtype)

        self.returns_to_go = put(dataset.returns_to_go, torch.float32)
        self.actions = put(dataset.actions, torch.int64)
        self.timesteps = put(dataset.timesteps, torch.int64)
        self.episode_starts = put(dataset.episode_starts, torch.int64)
        self.offsets = torch.arange(self.context_length, device=self.device) - (self.context_length - 1)  # [K]
        self.review_states: _DeviceReviewStates | None = None
        self.states: torch.Tensor | None = None
        if dataset.review_states is not None:
            self.review_states = _DeviceReviewStates(dataset.review_states, put=put)
            self.state_dim = dataset.review_states.state_dim
        else:
            self.states = put(dataset.stored_states, torch.float32)
            self.state_dim = int(self.states.shape[1])

    def batch(self, ends: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """The windows ending at rows ``ends`` (int [B]), left-padded where the episode starts later: returns_to_go
        float32 [B, K], states float32 [B, K, S], actions int64 [B, K], timesteps int64 [B, K], attention_mask int64
        [B, K] (0 at padding, where every other field is 0 too), all on the device."""
        ends = torch.as_tensor(ends, dtype=torch.int64).to(self.device, non_blocking=True)  # [B]
        episode = torch.searchsorted(self.episode_starts, ends, right=True) - 1
        episode_start = self.episode_starts[episode]  # [B]
        rows = ends[:, None] + self.offsets  # [B, K]
        valid = rows >= episode_start[:, None]
        rows = torch.where(valid, rows, ends[:, None])  # any in-range row; padded values are zeroed below
        if self.review_states is not None:
            out = None
            if self.reuse_states:
                shape = (rows.numel(), self.review_states.num_concepts, FEATURES_PER_CONCEPT)
                if self._states_out is None or self._states_out.shape != shape:
                    self._states_out = torch.empty(shape, dtype=torch.float32, device=self.device)
                out = self._states_out
            states = self.review_states.states(rows.reshape(-1), out=out).reshape(*rows.shape, self.state_dim)
        else:
            states = _gather(self.states, rows)
        batch = {
            "returns_to_go": _gather(self.returns_to_go, rows),
            "states": states,
            "actions": _gather(self.actions, rows),
            "timesteps": _gather(self.timesteps, rows),
        }
        padded = ~valid
        for value in batch.values():
            # zero the padded windows' rows in place: every tensor here is this batch's own (gathers, and the states
            # built above). On the CPU by index (a broadcast torch.where over [B, K, S] cost a third of a
            # 1,000-concept batch); on CUDA by a masked fill, which needs no host-device synchronisation
            if self.zero_by_index:
                value[padded] = 0
            else:
                value.masked_fill_(padded if value.dim() == 2 else padded[..., None], 0)
        batch["attention_mask"] = valid.to(torch.int64)
        return batch


class _DeviceReviewStates:
    """ReviewStates' arrays as tensors, and its ``states`` in PyTorch (see the module docstring).

    Per row, the memory of the reviewed concept after the review is held as what encoding needs: the two features
    that do not depend on the time of the state (reviews and stability, float32, computed once here with the
    encoder's formulas) and what the two others need at that time (stability, last review float64, last grade).
    """

    def __init__(self, rs: ReviewStates, *, put, compact: bool | None = None) -> None:
        self.num_concepts = rs.encoder.num_concepts
        self.encoder = rs.encoder
        self.t = put(rs.t, torch.float64)
        self.concept = put(rs.concept, torch.int64)
        self.snapshot_rows = put(rs.snapshot_rows, torch.int64)
        # int32 rows (a dataset holds < 2**31 rows): half the bytes of the [R, C] grid; an extra last row of -1 is
        # the "no snapshot" base, so the grid is one gather
        self.snapshots = put(np.concatenate([rs.snapshots, np.full((1, rs.snapshots.shape[1]), -1, np.int32)]),
                             torch.int32)
        self.episode_starts = put(rs.episode_starts, torch.int64)
        self.max_replay = max(1, int(_replay_lengths(rs).max(initial=0)))  # fixed replay width, found once
        memory = rs.memory
        stability = np.asarray(memory["stability"], dtype=np.float64)
        # a row's own review is always "seen": its features 2 and 3 as StateEncoder.encode computes them
        # features 2 and 3 of each row, float32 [N, 2] (one gather a batch)
        self.fixed_features = put(np.stack([
            (np.log1p(memory["reviews"]) / _REVIEWS_SCALE).astype(np.float32),
            (np.log1p(stability / _HOUR) / _STABILITY_SCALE).astype(np.float32)], axis=1), torch.float32)
        # what recall needs, float64 [N, 2]: the last review's time (s) and the stability (days for FSRS-6)
        self.last_review_and_stability = put(np.stack([
            np.asarray(memory["last_review"], dtype=np.float64),
            stability / fsrs6.DAY_S if rs.encoder.estimator == "fsrs6" else stability], axis=1), torch.float64)
        self.last_grade = put(memory["last_grade"], torch.int64)
        self.fsrs = _Fsrs6Recall(rs.encoder, device=self.t.device) if rs.encoder.estimator == "fsrs6" else None
        exponent = rs.encoder.concept_recall_exponent  # FSRS-6's per-concept exponent on recall (None: 1)
        self.exponent = None if exponent is None else put(np.asarray(exponent, dtype=np.float64), torch.float64)
        self.unseen = torch.tensor([0.0, NEVER_REVIEWED_ELAPSED, 0.0, 0.0], device=self.t.device)  # a concept's, unreviewed
        self.compact = compact if compact is not None else self.t.device.type == "cpu"

    def latest_reviews(self, rows: torch.Tensor) -> torch.Tensor:
        """int32 [R, C]: ReviewStates.latest_reviews for rows int64 [R], on the device."""
        R, C = rows.shape[0], self.num_concepts
        base, snapshot = self._bases(rows)
        latest = _gather(self.snapshots, snapshot)  # [R, C] (a fresh tensor: the scatter below writes into it)
        replayed = base[:, None] + torch.arange(self.max_replay, device=rows.device)  # [R, W]
        live = replayed < rows[:, None]  # rows base .. row - 1 are replayed
        replayed = torch.where(live, replayed, base[:, None])  # an in-range row; its value is masked to -1
        cell = torch.arange(R, device=rows.device)[:, None] * C + _gather(self.concept, replayed)  # [R, W]
        value = torch.where(live, replayed, -1).to(torch.int32)
        # rows increase along each replay, so the maximum is the latest review
        return latest.view(-1).scatter_reduce_(0, cell.view(-1), value.view(-1), "amax").view(R, C)

    def _bases(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(base int64 [R]: the first row to replay; snapshot int64 [R]: the row of self.snapshots to start from,
        its last (all -1) when no snapshot of the row's episode precedes it)."""
        episode_start = self.episode_starts[torch.searchsorted(self.episode_starts, rows, right=True) - 1]
        none = len(self.snapshots) - 1
        if not none:
            return episode_start, torch.full_like(rows, none)
        k = torch.searchsorted(self.snapshot_rows, rows, right=True) - 1
        snapshot_row = self.snapshot_rows[k.clamp(min=0)]
        has = (k >= 0) & (snapshot_row >= episode_start)
        return torch.where(has, snapshot_row, episode_start), torch.where(has, k, none)

    def states(self, rows: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """float32 [R, 4C]: the encoding before each review row, at its time (ReviewStates.states, i.e.
        StateEncoder.encode's features per concept, concept-major: estimated recall, log1p(elapsed hours) /
        log1p(720), log1p(reviews) / log1p(100), log1p(stability hours) / log1p(8760); for a concept never
        reviewed 0, NEVER_REVIEWED_ELAPSED, 0, 0).

        On the CPU the features are computed for the reviewed cells only (found with nonzero: far fewer than R x C
        when concepts are many); elsewhere (CUDA) on the whole grid, whose fixed shape needs no synchronisation.
        ``out``: float32 [R, C, 4] on the device to write the reviewed-cells path into (else a new tensor)."""
        latest = self.latest_reviews(rows)  # [R, C]
        R, C = latest.shape
        times = _gather(self.t, rows)
        if self.compact:
            flat = latest.view(-1)
            cells = (flat >= 0).nonzero().squeeze(1)  # reviewed cells, flat indices into [R x C]
            # every cell the unreviewed vector (copied row by row: a broadcast over two dimensions is several times
            # slower), then the reviewed cells overwritten
            if out is None:
                out = torch.empty((R, C, FEATURES_PER_CONCEPT), dtype=self.unseen.dtype, device=self.unseen.device)
            out.view(R, -1).copy_(self.unseen.repeat(C).expand(R, C * FEATURES_PER_CONCEPT))
            out.view(R * C, FEATURES_PER_CONCEPT).index_copy_(
                0, cells, self._features(_gather(flat, cells), _gather(times, cells // C)))
        else:
            seen = latest >= 0
            features = self._features(latest.clamp(min=0).reshape(-1), times.repeat_interleave(C))
            out = torch.where(seen[..., None], features.view(R, C, FEATURES_PER_CONCEPT), self.unseen)
        return out.reshape(R, C * FEATURES_PER_CONCEPT)

    def _features(self, source: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """float32 [M, 4]: the features of M reviewed cells whose latest review is row source[m], at time t[m]."""
        last_review, stability = _gather(self.last_review_and_stability, source).unbind(1)  # float64 [M] each
        elapsed_s = (t - last_review).clamp(min=0.0)
        out = torch.empty((len(source), FEATURES_PER_CONCEPT), dtype=torch.float32, device=source.device)
        if self.fsrs is not None:
            p = self.fsrs.recall(stability, elapsed_s, self.last_grade, source, subset=self.compact)
            if self.exponent is not None:  # StateEncoder's R ** k_c, k of each cell's concept
                p = p ** _gather(self.exponent, _gather(self.concept, source))
            out[:, 0] = p
        else:
            out[:, 0] = torch.exp2(-elapsed_s / stability)
        out[:, 1] = torch.log1p(elapsed_s / _HOUR) / _ELAPSED_SCALE
        out[:, 2:] = _gather(self.fixed_features, source)
        return out


class _Fsrs6Recall:
    """fsrs6.recall on reviewed cells, in PyTorch float64: the forgetting curve (fsrs6.forgetting_curve) at the whole
    days since the last review; less than a day after it, the encoder's same-day rule (its ``same_day_stability``,
    fitted or FSRS-6's defaults: the curve at the fractional days with that stability by the last grade; or its
    fsrs6_same_day_recall table)."""

    def __init__(self, config, *, device: torch.device) -> None:
        w = config.parameters
        self.decay = -float(w[20])
        self.factor = 0.9 ** (1.0 / self.decay) - 1.0
        table = fsrs6.check_same_day_recall(config.fsrs6_same_day_recall)
        short = fsrs6.check_same_day_stability(config.same_day_stability)
        self.table = None if table is None else torch.as_tensor(table, device=device)
        self.short = None if short is None else torch.as_tensor(short, device=device)

    def curve(self, days: torch.Tensor, stability: torch.Tensor) -> torch.Tensor:
        return (1.0 + self.factor * days / stability) ** self.decay

    def recall(self, stability_days: torch.Tensor, elapsed_s: torch.Tensor, last_grade: torch.Tensor,
               source: torch.Tensor, *, subset: bool) -> torch.Tensor:
        """float64 [M] from stability (days) and elapsed seconds since the last review (>= 0), float64 [M], and the
        last review's grade, ``last_grade[source]`` (int64 [N] gathered at int64 [M]). ``subset`` (the CPU's
        reviewed-cells path): the same-day rule computed for the cells less than a day after their last review only
        (found with nonzero); else for all, with no host-device synchronisation (CUDA's whole grid)."""
        days = torch.floor(elapsed_s / fsrs6.DAY_S)
        p = self.curve(days, stability_days)
        if self.table is None and self.short is None:
            return p
        same_day = days < 1
        if subset:
            cells = same_day.nonzero().squeeze(1)
            previous = _gather(last_grade, _gather(source, cells)).clamp(1, 4) - 1
            if self.table is not None:
                p.index_copy_(0, cells, _gather(self.table, previous))
            if self.short is not None:
                fraction = (_gather(elapsed_s, cells) / fsrs6.DAY_S).clamp(max=1.0)
                p.index_copy_(0, cells, self.curve(fraction, _gather(self.short, previous)))
            return p
        previous = last_grade[source].clamp(1, 4) - 1
        if self.table is not None:
            p = torch.where(same_day, self.table[previous], p)
        if self.short is not None:
            fraction = (elapsed_s / fsrs6.DAY_S).clamp(max=1.0)
            p = torch.where(same_day, self.curve(fraction, self.short[previous]), p)
        return p


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` for an integer index tensor of any shape into values' first dimension: index_select on the
    flattened index (on the CPU two to three times faster than advanced indexing, which takes a generic path), the
    index's shape then values' other dimensions."""
    return torch.index_select(values, 0, index.reshape(-1)).view(*index.shape, *values.shape[1:])


def _replay_lengths(rs: ReviewStates) -> np.ndarray:
    """int64 [N]: how many rows ReviewStates.latest_reviews replays for each row (its gap to its base)."""
    rows = np.arange(len(rs.t), dtype=np.int64)
    starts = rs.episode_starts
    episode_start = starts[np.searchsorted(starts, rows, side="right") - 1]
    if not len(rs.snapshot_rows):
        return rows - episode_start
    k = np.searchsorted(rs.snapshot_rows, rows, side="right") - 1
    snapshot_row = rs.snapshot_rows[np.maximum(k, 0)]
    has = (k >= 0) & (snapshot_row >= episode_start)
    return rows - np.where(has, snapshot_row, episode_start)
