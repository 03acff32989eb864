"""StepCacheStore: per-learner step states, exact against the full forward, bounded by size, never read under
another policy version or learner state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.dtlite import DTLite
from training.rl.kv_cache import StepCacheStore
from training.rl.model_config import max_attention_window

A, K, F, LAYERS = 5, 6, 4, 2
S = F * A
TOLERANCE = 1e-5


def make_lite(directory, seed: int) -> DTLite:
    torch.manual_seed(seed)
    model = DecisionTransformer(DTConfig(
        state_dim=S, action_dim=A, context_length=K, max_timestep=40, hidden_dim=32, num_layers=LAYERS, num_heads=2,
        return_scale=4.0, concept_features=F, concept_head_dim=8, state_token="summary",
        attention_window=max_attention_window(context_length=K, num_layers=LAYERS))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    export_artifacts(model=model, output_dir=directory, concept_keys=[f"c{i}" for i in range(A)], encoder={},
                     target_return=2.0, onnx=False)
    return DTLite.load(directory / "dt_lite_weights.npz", directory / "dt_lite_config.json")


@pytest.fixture(scope="module")
def lite(tmp_path_factory) -> DTLite:
    return make_lite(tmp_path_factory.mktemp("v1"), seed=1)


def learner_history(N: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    states = rng.random((N, S), dtype=np.float32)
    states[:, 2::F] = rng.integers(0, 3, (N, A))
    return {"returns_to_go": (rng.normal(size=N) * 3).astype(np.float32), "states": states,
            "actions": rng.integers(0, A, N), "timesteps": np.arange(N)}


def context(h: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    return {name: value[max(0, t - K):t] for name, value in h.items()}


def full_logits(lite: DTLite, h: dict[str, np.ndarray], t: int) -> np.ndarray:
    return lite.action_logits(**{name: value[None] for name, value in context(h, t).items()})[0, -1]


def test_a_learner_stepped_review_by_review_gets_the_full_forward_logits(lite):
    store = StepCacheStore()
    h = learner_history(3 * K, seed=0)
    for t in range(1, 3 * K + 1):
        logits = store.step_logits(lite, learner="ada", version=1, state_version=t, previous_state_version=t - 1,
                                   **context(h, t))
        np.testing.assert_allclose(logits, full_logits(lite, h, t), atol=TOLERANCE, rtol=0)
    # only the first request had nothing to step from
    assert store.misses == 1 and store.steps == 3 * K - 1 and store.hits == 0
    assert len(store) == 1  # each step replaced the learner's earlier entry
    again = store.step_logits(lite, learner="ada", version=1, state_version=3 * K, **context(h, 3 * K))
    np.testing.assert_allclose(again, full_logits(lite, h, 3 * K), atol=TOLERANCE, rtol=0)
    assert store.hits == 1


def test_several_new_steps_are_appended_at_once(lite):
    store = StepCacheStore()
    h = learner_history(2 * K, seed=3)
    store.step_logits(lite, learner="bo", version=1, state_version=4, **context(h, 4))
    logits = store.step_logits(lite, learner="bo", version=1, state_version=7, previous_state_version=4,
                               new_steps=3, **context(h, 7))
    np.testing.assert_allclose(logits, full_logits(lite, h, 7), atol=TOLERANCE, rtol=0)
    assert (store.misses, store.steps) == (1, 1)


def test_entries_are_evicted_least_recently_used_first_under_the_size_limit(lite):
    h = learner_history(K, seed=1)
    probe = StepCacheStore()
    probe.step_logits(lite, learner="x", version=1, state_version=K, **context(h, K))
    size = probe.nbytes
    assert size > 0
    store = StepCacheStore(max_bytes=3 * size)
    for name in ("a", "b", "c"):
        store.step_logits(lite, learner=name, version=1, state_version=K, **context(h, K))
    assert store.get("a", 1, K) is not None  # "a" is now the most recently used
    store.step_logits(lite, learner="d", version=1, state_version=K, **context(h, K))
    assert ("b", 1, K) not in store and all((n, 1, K) in store for n in "acd")
    assert store.nbytes <= store.max_bytes and store.evictions == 1
    tiny = StepCacheStore(max_bytes=size - 1)  # an entry larger than the store is not kept, and still answered
    logits = tiny.step_logits(lite, learner="a", version=1, state_version=K, **context(h, K))
    np.testing.assert_allclose(logits, full_logits(lite, h, K), atol=TOLERANCE, rtol=0)
    assert len(tiny) == 0 and tiny.nbytes == 0


def test_an_old_policy_version_or_an_old_learner_state_is_never_used(lite, tmp_path):
    store = StepCacheStore()
    h = learner_history(2 * K, seed=5)
    store.step_logits(lite, learner="cy", version=1, state_version=8, **context(h, 8))
    # version 2 of the policy (other weights): nothing of version 1 is read, even when named as the previous state
    lite2 = make_lite(tmp_path, seed=2)
    logits = store.step_logits(lite2, learner="cy", version=2, state_version=9, previous_state_version=8,
                               **context(h, 9))
    np.testing.assert_allclose(logits, full_logits(lite2, h, 9), atol=TOLERANCE, rtol=0)
    assert store.misses == 2 and store.steps == 0
    # a rewritten history (a late review): a new state version that does not extend the cached one
    late = learner_history(2 * K, seed=6)
    logits = store.step_logits(lite, learner="cy", version=1, state_version=9, **context(late, 9))
    np.testing.assert_allclose(logits, full_logits(lite, late, 9), atol=TOLERANCE, rtol=0)
    assert store.misses == 3 and store.steps == 0
    # the rewritten state asked again: its own entry answers (a hit), not anything of the old history
    again = store.step_logits(lite, learner="cy", version=1, state_version=9, **context(late, 9))
    np.testing.assert_allclose(again, full_logits(lite, late, 9), atol=TOLERANCE, rtol=0)
    assert store.hits == 1
    # another learner's entry is never read for this one
    other = learner_history(2 * K, seed=7)
    logits = store.step_logits(lite, learner="dee", version=1, state_version=9, previous_state_version=8,
                               **context(other, 9))
    np.testing.assert_allclose(logits, full_logits(lite, other, 9), atol=TOLERANCE, rtol=0)


def test_a_model_with_full_attention_is_answered_by_the_full_forward_and_nothing_is_kept(tmp_path):
    torch.manual_seed(4)
    model = DecisionTransformer(DTConfig(state_dim=S, action_dim=A, context_length=K, max_timestep=40, hidden_dim=32,
                                         num_layers=LAYERS, num_heads=2, return_scale=4.0)).eval()
    export_artifacts(model=model, output_dir=tmp_path, concept_keys=[f"c{i}" for i in range(A)], encoder={},
                     target_return=2.0, onnx=False)
    full = DTLite.load(tmp_path / "dt_lite_weights.npz", tmp_path / "dt_lite_config.json")
    store = StepCacheStore()
    h = learner_history(2 * K, seed=8)
    for t in (K, K + 1):
        logits = store.step_logits(full, learner="ed", version=1, state_version=t, previous_state_version=t - 1,
                                   **context(h, t))
        np.testing.assert_allclose(logits, full_logits(full, h, t), atol=TOLERANCE, rtol=0)
    assert len(store) == 0 and store.misses == 2 and store.steps == 0


def test_a_negative_size_is_refused():
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        StepCacheStore(max_bytes=-1)


# ----------------------------------------------------------------------------------------- HistoryStepCache
def right_aligned(h: dict[str, np.ndarray], ts: list[int], decision: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The contexts of learners whose histories are h's first ts[b] steps, asked at step ``decision`` of h (its
    state etc. the decision position's), right-aligned in K positions as LearnerStateBatch.contexts gives them."""
    out = {"returns_to_go": np.zeros((len(ts), K), np.float32), "states": np.zeros((len(ts), K, S), np.float32),
           "actions": np.zeros((len(ts), K), np.int64), "timesteps": np.zeros((len(ts), K), np.int64)}
    lengths = []
    for b, t in enumerate(ts):
        kept = list(range(max(0, t - (K - 1)), t)) + [decision]
        for name in out:
            out[name][b, K - len(kept):] = h[name][kept]
        lengths.append(len(kept) - 1)
    return out, np.array(lengths)


def expected_logits(lite: DTLite, contexts: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    return np.stack([lite.last_logits(**{name: value[b:b + 1, K - n - 1:] for name, value in contexts.items()})[0]
                     for b, n in enumerate(lengths.tolist())])


def test_history_cache_equals_the_full_forward_asked_again_after_a_review_and_after_a_rewrite(lite):
    from training.rl.kv_cache import HistoryStepCache

    cache = HistoryStepCache()
    h = learner_history(4 * K, seed=5)
    learners = list(range(3 * K))
    ts = [1 + b for b in learners]  # every history length from 1 step to well past the context
    for round_, (shift, decision) in enumerate([(0, 4 * K - 1), (0, 4 * K - 2), (1, 4 * K - 3)]):
        # round 0: every learner missed (prefill); 1: the same histories asked at another moment (hits); 2: one
        # review more each (extended by one step)
        contexts, lengths = right_aligned(h, [t + shift for t in ts], decision)
        got = cache.last_logits(lite, learners=learners, version=1, lengths=lengths, **contexts)
        np.testing.assert_allclose(got, expected_logits(lite, contexts, lengths), atol=TOLERANCE, rtol=0)
    assert (cache.misses, cache.hits, cache.steps) == (len(learners), len(learners), len(learners))
    # a rewritten history (a late review changed an earlier step): never the cached entry
    other = {name: value.copy() for name, value in h.items()}
    other["actions"][2] = (other["actions"][2] + 1) % A
    contexts, lengths = right_aligned(other, [5], 4 * K - 1)
    got = cache.last_logits(lite, learners=[4], version=1, lengths=lengths, **contexts)
    np.testing.assert_allclose(got, expected_logits(lite, contexts, lengths), atol=TOLERANCE, rtol=0)
    assert cache.misses == len(learners) + 1


def test_history_cache_never_uses_an_entry_of_another_version(lite, tmp_path):
    from training.rl.kv_cache import HistoryStepCache

    v2 = make_lite(tmp_path / "v2", seed=2)
    cache = HistoryStepCache()
    h = learner_history(2 * K, seed=6)
    contexts, lengths = right_aligned(h, [K + 2], 2 * K - 1)
    cache.last_logits(lite, learners=["ada"], version=1, lengths=lengths, **contexts)
    got = cache.last_logits(v2, learners=["ada"], version=2, lengths=lengths, **contexts)
    np.testing.assert_allclose(got, expected_logits(v2, contexts, lengths), atol=TOLERANCE, rtol=0)
    assert (cache.hits, cache.misses) == (0, 2)
    again = cache.last_logits(lite, learners=["ada"], version=1, lengths=lengths, **contexts)
    np.testing.assert_allclose(again, expected_logits(lite, contexts, lengths), atol=TOLERANCE, rtol=0)
    assert cache.hits == 1


def test_history_cache_is_bounded_by_its_size(lite):
    from training.rl.kv_cache import HistoryStepCache

    h = learner_history(2 * K, seed=7)
    contexts, lengths = right_aligned(h, [K], 2 * K - 1)
    probe = HistoryStepCache()
    probe.last_logits(lite, learners=[0], version=1, lengths=lengths, **contexts)
    cache = HistoryStepCache(max_bytes=3 * probe.store.nbytes)
    for learner in range(10):
        cache.last_logits(lite, learners=[learner], version=1, lengths=lengths, **contexts)
    assert len(cache.store) == 3 and cache.store.nbytes <= cache.store.max_bytes
    assert cache.store.evictions == 7
