"""LearnerStateBatch: many learners' stored states decoded together give each learner's own context and memory."""
import numpy as np
import pytest

from training.rl.encoder import EncodedLearnerState, EncoderConfig, StateEncoder
from training.rl.encoder.state import LearnerStateBatch

DAY = 86400.0


def _states(encoder, context_length, counts, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for count in counts:
        times = np.sort(rng.uniform(0, 20 * DAY, count))
        rows = [(int(rng.integers(encoder.num_concepts)), float(t), bool(rng.random() < 0.7), int(rng.integers(1, 5)))
                for t in times]
        rows = [(c, t, ok, 3 if ok else 1) for c, t, ok, _ in rows]
        out.append(EncodedLearnerState.from_history(rows, encoder=encoder, context_length=context_length))
    return out


@pytest.mark.parametrize("estimator", ["fsrs6", "halflife"])
def test_contexts_and_memory_equal_each_learners_own(estimator):
    encoder = StateEncoder(EncoderConfig(num_concepts=6, estimator=estimator))
    T, K = 5, 4
    counts = [0, 1, 3, 4, 5, 12]  # histories shorter than, as long as and longer than the kept K steps
    states = _states(encoder, T, counts)
    datas = [None] + [s.to_dict() for s in states]  # None: a learner never seen
    batch = LearnerStateBatch.from_dicts(datas, encoder=encoder, history_length=K)
    now = 25 * DAY
    rtg, obs, actions, timesteps = batch.contexts(now, 1.5, max_timestep=8)
    assert batch.lengths.tolist() == [0] + [min(c, K) for c in counts]
    for b, state in enumerate([EncodedLearnerState.new(encoder=encoder, context_length=T), *states]):
        n = batch.lengths[b] + 1
        expected = state.context(now, 1.5, max_timestep=8)
        for got, want in zip((rtg[b, -n:], obs[b, -n:], actions[b, -n:-1], timesteps[b, -n:]),
                             (expected[0], expected[1], expected[2][:-1], expected[3])):
            np.testing.assert_array_equal(got, want)
        for name in ("stability", "difficulty", "last_review", "reviews", "potential", "last_grade"):
            np.testing.assert_array_equal(getattr(batch.memory, name)[b], getattr(state.memory, name)[0])


def test_a_state_that_does_not_fit_is_a_value_error_naming_it():
    encoder = StateEncoder(EncoderConfig(num_concepts=3))
    good = _states(encoder, 4, [5])[0].to_dict()
    other = _states(StateEncoder(EncoderConfig(num_concepts=4)), 4, [2])[0].to_dict()
    with pytest.raises(ValueError, match="num_concepts"):
        LearnerStateBatch.from_dicts([good, other], encoder=encoder, history_length=3)
    with pytest.raises(ValueError, match="history_length"):
        LearnerStateBatch.from_dicts([good], encoder=encoder, history_length=5)
    short = {**good, "memory": {**good["memory"], "stability": good["memory"]["reviews"][:8]}}
    with pytest.raises(ValueError, match="memory.stability"):
        LearnerStateBatch.from_dicts([good, short], encoder=encoder, history_length=3)
    with pytest.raises(ValueError, match="format"):
        LearnerStateBatch.from_dicts([{**good, "format": 2}], encoder=encoder, history_length=3)


def test_history_states_kept_apart_decode_as_the_inline_ones():
    """to_dict(history_states=False) + history_state_bytes (how LearnerState stores a state) decodes, one by one and
    in a batch, to what the whole dict gives; rows of both forms mix in one batch (rows stored before the column)."""
    encoder = StateEncoder(EncoderConfig(num_concepts=5))
    K = 4
    states = _states(encoder, K + 1, [0, 2, 4, 9])
    whole = [s.to_dict() for s in states]
    apart = [s.to_dict(history_states=False) for s in states]
    blobs = [s.history_state_bytes() for s in states]
    assert all("states" not in d["history"] for d in apart) and blobs[0] == b""
    assert len(blobs[3]) == 4 * K * encoder.state_dim  # float32 [k, state_dim]
    for d, blob, state in zip(apart, blobs, states):
        again = EncodedLearnerState.from_dict(d, encoder=encoder, history_states=memoryview(blob))
        assert again.to_dict() == state.to_dict()
    mixed = LearnerStateBatch.from_dicts([apart[0], whole[1], apart[2], apart[3]], encoder=encoder, history_length=K,
                                         history_states=[blobs[0], None, blobs[2], memoryview(blobs[3])])
    inline = LearnerStateBatch.from_dicts(whole, encoder=encoder, history_length=K)
    for name in ("states", "actions", "cumulative_rewards", "timesteps", "lengths"):
        np.testing.assert_array_equal(getattr(mixed, name), getattr(inline, name))
    with pytest.raises(ValueError, match="history.states is neither"):
        EncodedLearnerState.from_dict(apart[2], encoder=encoder)
    with pytest.raises(ValueError, match="history.states is neither"):
        LearnerStateBatch.from_dicts([apart[2]], encoder=encoder, history_length=K)
    with pytest.raises(ValueError, match="history.states has"):
        LearnerStateBatch.from_dicts([apart[2]], encoder=encoder, history_length=K, history_states=[blobs[1]])
