"""Students like a curriculum's own (simulator.FsrsCohort): their memory is FSRS-6 with the given parameters, the
oracle reads it, and evaluation reports them beside the built-in students."""
import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, fsrs6
from training.rl.evaluation import BASELINES, EXTRA_BASELINES, evaluate
from training.rl.policies import make_policy
from training.rl.simulator import FsrsCohort, StudentsLike, generate_logs, run_policies
from training.rl.encoder import StateEncoder

C = 5
W = list(fsrs6.DEFAULT_PARAMETERS)
W[0], W[20] = 0.6, 0.3  # not the defaults, so following them is visible
TABLE = (0.6, 0.8, 0.9, 0.95)


def _rollout(students: StudentsLike, *, n=40, steps=50, seed=2):
    cohort = FsrsCohort(students=students, num_students=n, num_concepts=C, interactions=steps, seed=seed)
    rng = np.random.default_rng(0)
    policy = make_policy("random", num_learners=n, num_concepts=C, rng=rng)
    before = []

    class Recording:  # records the true recall of the reviewed concept just before each review
        def __init__(self, inner):
            self.inner = inner

        def review(self, concepts, t):
            before.append(self.inner.recall_probability(t)[np.arange(n), concepts])
            return self.inner.review(concepts, t)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    rollout = run_policies(cohort=Recording(cohort), groups=[(policy, np.arange(n))],
                           encoder=StateEncoder(EncoderConfig(num_concepts=C)))
    return cohort, rollout, np.stack(before, axis=1)


def test_students_without_spread_follow_the_given_parameters_on_their_own_reviews():
    students = StudentsLike(parameters=W, same_day_recall=TABLE, learner_sigma=0.0, concept_sigma=0.0)
    cohort, rollout, before = _rollout(students)
    n, steps = rollout.t.shape
    replayed = fsrs6.replay(np.repeat(np.arange(n), steps), rollout.concepts.reshape(-1), rollout.t.reshape(-1),
                            rollout.grade.reshape(-1).astype(np.int64), w=W, same_day_recall=TABLE)
    np.testing.assert_allclose(before.reshape(-1), replayed["p"], rtol=1e-12, atol=1e-15)
    # outcomes follow that recall: wrong on first reviews, mostly right when recall is high
    assert not rollout.correct.reshape(-1)[replayed["first"]].any()
    high = replayed["p"] > 0.9
    assert rollout.correct.reshape(-1)[high].mean() > 0.85


def test_spread_learners_follow_the_parameters_on_their_own_clocks():
    students = StudentsLike(parameters=W, same_day_recall=TABLE, learner_sigma=0.5, concept_sigma=0.5)
    cohort, rollout, before = _rollout(students)
    n, steps = rollout.t.shape
    assert cohort.rate.std() > 0.1  # the spread is there
    rows = np.repeat(np.arange(n), steps)
    concepts = rollout.concepts.reshape(-1)
    own = cohort.own_time(rollout.t.reshape(-1), rows, concepts)
    replayed = fsrs6.replay(rows, concepts, own, rollout.grade.reshape(-1).astype(np.int64), w=W,
                            same_day_recall=TABLE)
    np.testing.assert_allclose(before.reshape(-1), replayed["p"], rtol=1e-12, atol=1e-15)


def test_the_same_seed_gives_the_same_students_and_the_spread_is_seeded():
    students = StudentsLike(parameters=W, same_day_recall=TABLE)
    a = generate_logs(num_users=20, interactions=15, num_concepts=C, seed=4, students_like=students)
    b = generate_logs(num_users=20, interactions=15, num_concepts=C, seed=4, students_like=students)
    c = generate_logs(num_users=20, interactions=15, num_concepts=C, seed=5, students_like=students)
    assert np.array_equal(a.correct, b.correct) and np.array_equal(a.concept, b.concept)
    assert not np.array_equal(a.t, c.t)


def test_the_oracle_gain_is_fsrs6_on_the_students_true_memory():
    students = StudentsLike(parameters=W, same_day_recall=TABLE, learner_sigma=0.3, concept_sigma=0.3)
    cohort, rollout, _ = _rollout(students, n=6, steps=20)
    t = rollout.t[:, -1] + 2 * 86400.0
    gain = cohort.expected_recall_gain(t, horizon_s=86400.0)
    s, c = 3, int(rollout.concepts[3, -1])
    p = cohort.recall_probability(t)[s, c]
    expected = 0.0
    for correct, weight in ((True, p), (False, 1 - p)):
        memory = fsrs6.Memory(*(np.copy(getattr(cohort.memory, f)[[s]][:, [c]]) for f in
                                ("stability", "difficulty", "last_t", "last_grade", "reviews")))
        grade = 1 if not correct else (2 if p < 0.5 else 3 if p < 0.85 else 4)
        own = cohort.own_time(np.array([t[s]]), np.array([s]), np.array([c]))
        fsrs6.update(memory, [0], [0], own, [grade], w=W)
        later = cohort.own_time(np.array([t[s] + 86400.0]), np.array([s]), np.array([c]))
        expected += weight * fsrs6.recall(memory, [0], [0], later, w=W, same_day_recall=TABLE)[0]
    assert gain[s, c] == pytest.approx(expected - cohort.recall_probability(t + 86400.0)[s, c], abs=1e-12)


def test_students_like_come_from_a_fitted_encoder_only():
    assert StudentsLike.from_encoder(EncoderConfig(num_concepts=C)) is None  # default parameters: nothing fitted
    assert StudentsLike.from_encoder(EncoderConfig(num_concepts=C, estimator="halflife")) is None
    fitted = EncoderConfig(num_concepts=C, fsrs6_parameters=W, fsrs6_same_day_recall=TABLE)
    assert StudentsLike.from_encoder(fitted.to_dict()) == StudentsLike(parameters=W, same_day_recall=TABLE)
    with pytest.raises(ValueError, match="learner_sigma"):
        StudentsLike(parameters=W, learner_sigma=-1.0)


def test_evaluation_reports_both_populations_when_fitted_parameters_exist():
    fitted = EncoderConfig(num_concepts=C, fsrs6_parameters=W, fsrs6_same_day_recall=TABLE)
    both = evaluate(num_concepts=C, students=8, interactions=20, seed=3, encoder=fitted)
    assert set(both) == {"metric", "students", "seed", "results", "students_like"}
    assert set(both["results"]) == set(both["students_like"]) == {*BASELINES, *EXTRA_BASELINES}
    for block in ("results", "students_like"):
        for name, r in both[block].items():
            assert set(r) == {"mean", "ci95"} and r["ci95"][0] <= r["mean"] <= r["ci95"][1], (block, name)
    # the two populations are different students; the built-in block is what it is without the second
    built_in = evaluate(num_concepts=C, students=8, interactions=20, seed=3, encoder=fitted,
                        students_like=None)["results"]
    assert built_in == both["results"]
    assert both["students_like"]["random"]["mean"] != both["results"]["random"]["mean"]
    unfitted = evaluate(num_concepts=C, students=8, interactions=20, seed=3)
    assert "students_like" not in unfitted


def test_students_like_carry_the_encoders_same_day_stabilities():
    short = (0.05, 0.2, 0.3, 0.4)
    fitted = EncoderConfig(num_concepts=C, fsrs6_parameters=W, fsrs6_same_day_stability=short)
    students = StudentsLike.from_encoder(fitted.to_dict())
    assert students == StudentsLike(parameters=W, same_day_stability=short) and students.same_day_recall is None
    with pytest.raises(ValueError, match="one same-day rule"):
        StudentsLike(parameters=W, same_day_recall=TABLE, same_day_stability=short)
