"""StepCacheStore: per-learner DTLite step states (cached attention keys/values), so that a recommendation after a
review computes only the new tokens (dtlite.DTLite.extend) instead of the whole context (NumPy only).

An entry is keyed by (learner, policy version, learner-state version) and holds the dtlite.StepState after that
state's newest state token. The store is a bounded LRU (an OrderedDict): entries past ``max_bytes`` (counted by
StepState.nbytes) are evicted, least recently used first. A request names the state version it is for and, when its
state is an earlier one with ``new_steps`` steps appended, that earlier version: the store steps from the earlier
entry when it has it, and otherwise (a miss, a rewritten history, another policy version) runs the full forward
(DTLite.prefill) on the context. An entry is only ever read under its exact key, so one of an old policy version or
of another learner state is never used for a newer one. A model with full attention is always answered by the full
forward, and nothing is kept for it.

`HistoryStepCache` is serving's use of it (curriculum/serving.py): per learner the StepState after the stored
history, keyed by a digest of that history's token inputs (the learner-state generation), so that a recommendation
computes only the decision position's 3 tokens, and after one new review 3 more.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xxhash

from .dtlite import DTLite, StepState

DEFAULT_MAX_BYTES = 64 << 20  # about 2,000 learners at the defaults (hidden 64, 2 blocks, a window of 30 tokens)


class StepCacheStore:
    """A bounded, thread-safe LRU of StepStates keyed by (learner, version, state_version).

    ``max_bytes``: the most bytes of arrays kept (StepState.nbytes summed); an entry larger than that is not kept.
    Counters ``hits`` (the state itself was cached), ``steps`` (stepped from an earlier state), ``misses`` (full
    forward) and ``evictions`` say how it went."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Hashable, Hashable, Hashable], StepState] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = self.steps = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[Hashable, Hashable, Hashable]) -> bool:
        return key in self._entries

    def get(self, learner: Hashable, version: Hashable, state_version: Hashable) -> StepState | None:
        """The entry under exactly this key (now the most recently used), or None."""
        key = (learner, version, state_version)
        with self._lock:
            state = self._entries.get(key)
            if state is not None:
                self._entries.move_to_end(key)
            return state

    def put(self, learner: Hashable, version: Hashable, state_version: Hashable, state: StepState) -> None:
        """Keep ``state`` (a single learner's or a batch's) under the key, evicting the least recently used entries
        until the store fits ``max_bytes``; a state larger than ``max_bytes`` is not kept."""
        key = (learner, version, state_version)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            if state.nbytes > self.max_bytes:
                return
            self._entries[key] = state
            self.nbytes += state.nbytes
            while self.nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.nbytes -= evicted.nbytes
                self.evictions += 1

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def discard(self, learner: Hashable, version: Hashable, state_version: Hashable) -> None:
        """Drop the entry under the key, if any."""
        with self._lock:
            old = self._entries.pop((learner, version, state_version), None)
            if old is not None:
                self.nbytes -= old.nbytes

    def step_logits(
        self,
        lite: DTLite,
        *,
        learner: Hashable,
        version: Hashable,
        state_version: Hashable,
        returns_to_go: Any,
        states: Any,
        actions: Any,
        timesteps: Any,
        previous_state_version: Hashable | None = None,
        new_steps: int = 1,
    ) -> np.ndarray:
        """The logits float32 [A] of one learner's newest state token, as ``lite.select_action`` computes them on
        the same context, using the cache where it can.

        The context is what select_action reads for the learner: ``returns_to_go`` [T], ``states`` [T, S],
        ``actions`` [T] (the last one unread), ``timesteps`` [T], the last T <= context_length steps, no padding.
        ``previous_state_version``: the learner's state version that this one extends by its last ``new_steps``
        steps (None: it does not, e.g. its history was rewritten). In order:

        1. an entry (learner, version, state_version): its logits (the same state asked again);
        2. an entry (learner, version, previous_state_version) and 1 <= new_steps < T: DTLite.extend by the last
           new_steps steps (their actions: actions[-new_steps - 1:-1]); the earlier entry is replaced;
        3. otherwise the full forward (DTLite.prefill).

        The result is kept under (learner, version, state_version). A model without an attention window (full
        attention: nothing it computed stays valid once the context slides) is always answered by the full forward
        (DTLite.last_logits) and nothing is kept. ValueError from DTLite for a context of the wrong shape.
        """
        if lite.attention_window is None:
            self._count("misses")
            return lite.last_logits(*(np.asarray(a)[None] for a in (returns_to_go, states, actions, timesteps)))[0]
        cached = self.get(learner, version, state_version)
        if cached is not None and cached.logits is not None:
            self._count("hits")
            return cached.logits[0].copy()
        rtg = np.asarray(returns_to_go, np.float32)
        states = np.asarray(states, np.float32)
        actions = np.asarray(actions)
        timesteps = np.asarray(timesteps)
        T = rtg.shape[0]
        earlier = None
        if previous_state_version is not None and 1 <= new_steps < T:
            earlier = self.get(learner, version, previous_state_version)
        if earlier is not None:
            new = slice(T - new_steps, T)
            state = lite.extend(earlier, actions[None, T - new_steps - 1:T - 1], rtg[None, new], states[None, new],
                                timesteps[None, new])
            self.discard(learner, version, previous_state_version)
            self._count("steps")
        else:
            state = lite.prefill(rtg[None], states[None], actions[None], timesteps[None])
            self._count("misses")
        self.put(learner, version, state_version, state)
        return state.logits[0].copy()


def _stack(states: list[StepState]) -> StepState:
    """One StepState of the learners of ``states`` (single learners', the same cached length, no padding)."""
    return StepState(keys=tuple(np.concatenate(k) for k in zip(*(s.keys for s in states))),
                     values=tuple(np.concatenate(v) for v in zip(*(s.values for s in states))), valid=None,
                     timesteps=np.concatenate([s.timesteps for s in states]), logits=None)


def _split(state: StepState) -> list[StepState]:
    """The learners of a batch StepState (no padding), each with its own arrays (a kept entry holds its own
    bytes, not a view of the whole batch's); logits dropped (a later ask is at another moment: it steps)."""
    return [StepState(keys=tuple(k[b:b + 1].copy() for k in state.keys),
                      values=tuple(v[b:b + 1].copy() for v in state.values), valid=None,
                      timesteps=state.timesteps[b:b + 1].copy(), logits=None) for b in range(state.batch_size)]


class HistoryStepCache:
    """Serving's per-step path: for each (learner, policy version) the StepState after the learner's stored history
    (every review in the context but the decision position, whose state depends on the moment asked), so that a
    recommendation computes only the 3 tokens of the decision position, and after one new review 3 more.

    An entry's ``state_version`` (the learner-state generation) is a 128-bit XXH3 digest (the ``xxhash`` package:
    0.65 us per 15-step history against BLAKE2b's 8.1 us; not a cryptographic hash, which this key needs not be: a
    collision could only give a learner an entry of another of the same learner's histories, under the same version,
    and the histories come from the learner's own reviews) of exactly the token inputs of that history (returns-to-go, states, actions, timesteps, as float32/int64 bytes): an entry is only
    ever used for the very history it was computed from, so one of another policy version or of an older (or
    rewritten) learner state is never used. After one new review the entry of the previous history is found by the
    digest of the new history without its newest step (the previous one's last ``K - 1`` steps: the one that fell
    out of the context is never read again, `max_attention_window`) and extended by that step (DTLite.extend
    without logits); otherwise the history is prefilled (DTLite.prefill). Bounded by ``max_bytes`` (StepCacheStore,
    least recently used first). Thread-safe. Counters: ``hits`` (the history was cached), ``steps`` (extended by one
    review), ``misses`` (prefilled)."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.store = StepCacheStore(max_bytes=max_bytes)
        # (learner, version, digest of the entry's history without its oldest step when full) -> its state_version
        self._previous: OrderedDict[tuple[Hashable, Hashable, bytes], bytes] = OrderedDict()
        self._max_previous = max(1024, max_bytes // 8192)
        self._lock = threading.Lock()
        self.hits = self.steps = self.misses = 0

    @staticmethod
    def _digest(*arrays: np.ndarray) -> bytes:
        h = xxhash.xxh3_128()
        for a in arrays:
            h.update(np.ascontiguousarray(a))
        return h.digest()

    def last_logits(self, lite: DTLite, *, learners: Sequence[Hashable], version: Hashable, returns_to_go: np.ndarray,
                    states: np.ndarray, actions: np.ndarray, timesteps: np.ndarray,
                    lengths: np.ndarray) -> np.ndarray:
        """The last state token's logits float32 [B, A] of each learner's context, as ``lite.last_logits`` computes
        them on it (float32 rounding apart), B >= 1 learners at once.

        Contexts right-aligned in K + 1 = ``lite.context_length`` positions (LearnerStateBatch.contexts): position
        K is the decision, learner b's history its ``lengths[b]`` (1 <= lengths[b] <= K) positions before it;
        returns_to_go float32 [B, K + 1], states float32 [B, K + 1, S], actions int [B, K + 1] (the last unread),
        timesteps int [B, K + 1]. ``learners``: a key per learner (its database id), ``version``: the policy
        version's (its id; ``lite`` must be that version's). ValueError for a model without an attention window."""
        lite._require_window()
        B, K1 = returns_to_go.shape
        K = K1 - 1
        lengths = np.asarray(lengths)
        if K1 != lite.context_length or lengths.min() < 1 or lengths.max() > K:
            raise ValueError(f"contexts of {lite.context_length} positions with 1 to {K} history steps expected, got "
                             f"{K1} positions and {lengths.min()} to {lengths.max()} steps")
        entries: list[StepState | None] = [None] * B
        generations, suffixes = [], []
        extend: list[tuple[int, StepState, bytes]] = []
        for b, n in enumerate(lengths.tolist()):
            rows = slice(K - n, K)
            inputs = (returns_to_go[b, rows], states[b, rows], actions[b, rows], timesteps[b, rows])
            generation = self._digest(*inputs)
            # the key a later history extending this one by a step looks this entry up by
            suffixes.append(self._digest(*(a[1:] for a in inputs)) if n == K else generation)
            generations.append(generation)
            entries[b] = self.store.get(learners[b], version, generation)
            if entries[b] is None and n >= 2:
                with self._lock:
                    old = self._previous.get((learners[b], version, self._digest(*(a[:-1] for a in inputs))))
                earlier = None if old is None else self.store.get(learners[b], version, old)
                if earlier is not None:
                    extend.append((b, earlier, old))
        hits = sum(e is not None for e in entries)
        for group in _by_cached_tokens([(b, e) for b, e, _ in extend]):
            rows = np.array([b for b, _ in group])
            grown = lite.extend(_stack([e for _, e in group]), actions[rows, K - 2:K - 1], returns_to_go[rows, K - 1:K],
                                states[rows, K - 1:K], timesteps[rows, K - 1:K], logits=False)
            for b, state in zip(rows.tolist(), _split(grown)):
                entries[b] = state
        for b, _, old in extend:
            self.store.discard(learners[b], version, old)
        missed = [b for b, e in enumerate(entries) if e is None]
        for n in sorted({int(lengths[b]) for b in missed}):
            rows = np.array([b for b in missed if lengths[b] == n])
            prefilled = lite.prefill(returns_to_go[rows, K - n:K], states[rows, K - n:K], actions[rows, K - n:K],
                                     timesteps[rows, K - n:K])
            for b, state in zip(rows.tolist(), _split(prefilled)):
                entries[b] = state
        for b in range(B):
            self.store.put(learners[b], version, generations[b], entries[b])
        with self._lock:
            for b in range(B):
                self._previous[(learners[b], version, suffixes[b])] = generations[b]
                self._previous.move_to_end((learners[b], version, suffixes[b]))
            while len(self._previous) > self._max_previous:
                self._previous.popitem(last=False)
            self.hits += hits
            self.steps += len(extend)
            self.misses += len(missed)
        logits = None
        for group in _by_cached_tokens(list(enumerate(entries))):
            rows = np.array([b for b, _ in group])
            stepped = lite.step(_stack([e for _, e in group]), actions[rows, K - 1], returns_to_go[rows, K],
                                states[rows, K], timesteps[rows, K], keep_cache=False)
            if logits is None:
                logits = np.empty((B, stepped.logits.shape[1]), np.float32)
            logits[rows] = stepped.logits
        return logits


def _by_cached_tokens(items: list[tuple[int, StepState]]) -> list[list[tuple[int, StepState]]]:
    groups: dict[int, list[tuple[int, StepState]]] = {}
    for b, state in items:
        groups.setdefault(state.cached_tokens, []).append((b, state))
    return list(groups.values())
