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

Not wired into the serving endpoint yet: that needs a learner-state version that changes on every write of the
state and says which writes only appended steps (a late review rewrites the history); see docs/architecture.md.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

from .dtlite import DTLite, StepState

DEFAULT_MAX_BYTES = 64 << 20  # about 1,000 learners at the defaults (hidden 128, 4 blocks, a window of 15 tokens)


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
