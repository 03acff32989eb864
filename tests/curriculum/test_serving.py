"""Serving: the per-process policy cache (load once, swap without failing) and the fallback recommendation."""
import datetime as dt
import threading
from types import SimpleNamespace

import pytest

from curriculum import serving
from curriculum.models import Learner
from curriculum.serving import PolicyCache
from curriculum.reviews.store import record_reviews
from curriculum.services import promote_policy

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def fake(policy_id):
    return SimpleNamespace(id=policy_id, version=policy_id * 10)


class Loader:
    """Counts loads; a load of an id in `gates` waits for its event; ids in `broken` raise."""

    def __init__(self):
        self.calls, self.gates, self.broken = [], {}, set()

    def __call__(self, policy_id):
        self.calls.append(policy_id)
        if policy_id in self.gates:
            assert self.gates[policy_id].wait(10)
        if policy_id in self.broken:
            raise OSError("artifact storage unreachable")
        return fake(policy_id)


def test_a_version_is_loaded_once_per_process():
    loader = Loader()
    cache = PolicyCache(loader=loader)
    assert [cache.get(curriculum_id=1, policy_id=7).version for _ in range(5)] == [70] * 5
    assert cache.get(curriculum_id=1, policy_id=None) is None
    assert loader.calls == [7]


def test_while_a_new_version_loads_the_old_one_answers_then_it_is_swapped_in():
    loader = Loader()
    cache = PolicyCache(loader=loader)
    cache.get(curriculum_id=1, policy_id=1)
    loader.gates[2] = threading.Event()
    loading = threading.Thread(target=cache.get, kwargs={"curriculum_id": 1, "policy_id": 2})
    loading.start()
    while loader.calls.count(2) == 0:  # the load has begun and is blocked
        threading.Event().wait(0.01)
    assert [cache.get(curriculum_id=1, policy_id=2).version for _ in range(3)] == [10, 10, 10]
    loader.gates[2].set()
    loading.join(5)
    assert cache.get(curriculum_id=1, policy_id=2).version == 20
    assert loader.calls == [1, 2]


def test_the_first_requests_wait_for_one_load():
    loader = Loader()
    loader.gates[3] = threading.Event()
    cache = PolicyCache(loader=loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(curriculum_id=1, policy_id=3))) for _ in range(4)]
    for t in threads:
        t.start()
    loader.gates[3].set()
    for t in threads:
        t.join(5)
    assert [r.version for r in results] == [30] * 4 and loader.calls == [3]


def test_a_version_that_fails_to_load_leaves_the_old_one_answering_and_is_retried_later():
    loader = Loader()
    cache = PolicyCache(loader=loader, retry_after_s=60)
    cache.get(curriculum_id=1, policy_id=1)
    loader.broken.add(2)
    assert cache.get(curriculum_id=1, policy_id=2).version == 10
    assert cache.get(curriculum_id=1, policy_id=2).version == 10
    assert loader.calls == [1, 2]  # not retried at once
    assert cache.get(curriculum_id=5, policy_id=9).version == 90  # other curricula are unaffected
    loader.broken.clear()
    cache._retry_after_s = 0
    assert cache.get(curriculum_id=1, policy_id=2).version == 20


def test_a_version_that_keeps_failing_logs_its_traceback_once_then_one_line_per_retry(caplog):
    import logging

    loader = Loader()
    loader.broken.add(2)
    cache = PolicyCache(loader=loader, retry_after_s=0)  # every request retries, as every 30 s would
    with caplog.at_level(logging.INFO, logger=serving.logger.name):
        for _ in range(4):
            assert cache.get(curriculum_id=1, policy_id=2) is None
    failures = [r for r in caplog.records if "load policy id 2" in r.getMessage()]
    assert len(failures) == 4 and loader.calls == [2, 2, 2, 2]
    assert [r.exc_info is not None for r in failures] == [True, False, False, False]  # one traceback
    assert all(r.levelno == logging.WARNING and "\n" not in r.getMessage() for r in failures[1:])
    assert "OSError: artifact storage unreachable" in failures[1].getMessage()
    # once it loads, a later failure is a new story (v3 promoted, then a rollback to v2 that fails): a traceback again
    loader.broken.clear()
    assert cache.get(curriculum_id=1, policy_id=2).version == 20
    assert cache.get(curriculum_id=1, policy_id=3).version == 30
    loader.broken.add(2)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=serving.logger.name):
        assert cache.get(curriculum_id=1, policy_id=2).version == 30
    assert [r.exc_info is not None for r in caplog.records if "load policy id 2" in r.getMessage()] == [True]


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=4)


def test_a_new_learner_gets_the_first_concept_from_the_fallback(demo):
    rec = serving.recommend(curriculum="demo", learner="nobody")
    assert rec == serving.Recommendation("c0", {"c0": 0.0, "c1": 0.0, "c2": 0.0, "c3": 0.0}, None, "fallback:lowest_recall",
                                         recommendation_id=rec.recommendation_id, propensity=1.0, candidates=4)
    assert rec.recommendation_id is not None
    assert not Learner.objects.exists()


def test_concepts_added_later_are_seen_by_the_next_request(demo, make_curriculum):
    record_reviews(items=[{"curriculum": "demo", "learner": "u1", "concept": f"c{i}", "correct": True,
                           "reviewed_at": T0.isoformat()} for i in range(4)])
    assert serving.recommend(curriculum="demo", learner="u1", at=T0).concept == "c0"
    make_curriculum("demo", concepts=5)  # appends c4
    assert serving.recommend(curriculum="demo", learner="u1", at=T0).concept == "c4"


def test_an_active_policy_that_cannot_be_loaded_falls_back_instead_of_failing(demo, make_policy, caplog):
    promote_policy(policy=make_policy(demo), reason="test")  # its artifact files are not a real DTLite
    rec = serving.recommend(curriculum="demo", learner="u1")
    assert rec.strategy == "fallback:lowest_recall" and rec.policy_version is None
    assert "cannot load policy" in caplog.text


def test_unknown_curriculum_and_candidates_are_refused(demo):
    with pytest.raises(serving.UnknownCurriculum):
        serving.recommend(curriculum="nope", learner="u1")
    with pytest.raises(serving.UnknownConcepts, match="'x'"):
        serving.recommend(curriculum="demo", learner="u1", candidates=["c1", "x"])


@pytest.mark.parametrize("estimator", ["fsrs6", "halflife"])
def test_the_serving_fallback_and_the_evaluation_baseline_choose_alike(estimator):
    """One lowest-recall rule: for the same learners, serving's fallback picks what evaluate_policy's lowest_recall
    baseline picks, including a forgotten concept (recall 0) against a never-reviewed one and exact ties."""
    import numpy as np

    from training.rl.encoder import EncodedLearnerState, EncoderConfig, StateEncoder
    from training.rl.policies import Observation, make_policy

    C, day = 5, 86400.0
    encoder = StateEncoder(EncoderConfig(num_concepts=C, estimator=estimator))
    rng = np.random.default_rng(7)
    histories = [
        [],  # new learner: position 0
        [(0, 0.0, True, 3)],  # position 1 (never reviewed) before the reviewed 0
        [(c, 0.0, True, 3) for c in range(C)],  # all reviewed at once, equal recall: a tie, position 0
        [(c, 0.0, False, 1) for c in range(C - 1)],  # forgotten (recall 0 after 5000 days) vs never-reviewed 4
    ] + [[(int(rng.integers(C)), float(t), bool(rng.random() < 0.7), 0) for t in np.sort(rng.uniform(0, 9 * day, 12))]
         for _ in range(40)]
    now = 10 * day
    states = [EncodedLearnerState.from_history(h, encoder=encoder, context_length=4) for h in histories]
    nows = [now] * len(states)
    nows[3] = 5000 * day  # 2 ** (-5000 days / 1 day) underflows to exactly 0
    keys = tuple(f"c{i}" for i in range(C))
    served = [serving._lowest_recall(s.memory, encoder=s.encoder, keys=keys, now=t, allowed=list(range(C)))[0].concept
              for s, t in zip(states, nows)]

    encoded = np.stack([s.encode(t) for s, t in zip(states, nows)])
    recall = np.stack([s.encoder.recall(s.memory, np.array([t]))[0] for s, t in zip(states, nows)])
    if estimator == "halflife":  # FSRS-6's power curve never reaches 0 (0.21 after 5000 days)
        assert recall[3, :C - 1].max() == 0.0  # the forgotten case really estimates 0
    obs = Observation(step=1, t=np.array(nows), recall=recall, states=encoded, cumulative_reward=np.zeros(len(states)))
    baseline = make_policy("lowest_recall", num_learners=len(states), num_concepts=C, rng=rng).select(obs)
    assert served == [keys[i] for i in baseline]
    assert served[:4] == ["c0", "c1", "c0", "c4"]


def test_learner_states_are_decoded_as_the_standard_library_would():
    """The serving queries decode a state's JSON with orjson (selectors._json_loads): the same values, and a document
    only the standard library reads (NaN, which it writes and SQLite stores as text) still decodes."""
    import json
    import math

    from curriculum.selectors import _json_loads

    document = json.dumps({"v": 3, "memory": {"stability": "AAAA", "reviews": [1, 2]}, "t": 1.7e9, "ok": True,
                           "none": None, "text": "é\u2603"})
    assert _json_loads(document) == json.loads(document)
    assert math.isnan(_json_loads('{"x": NaN}')["x"])
    with pytest.raises(json.JSONDecodeError):
        _json_loads("{not json")
