"""Student families (training/rl/students): each family's recall against a hand-computed small case, the massing
rules, the shared random streams, parse errors and the mixed synthetic log."""
import math

import numpy as np
import pytest

from training.rl.encoder import fsrs6
from training.rl.simulator import generate_logs
from training.rl.students import (FAMILIES, ActrCohort, ActrConfig, Cohort, Fsrs6Cohort, HlrCohort, HlrConfig,
                                  SimulatorConfig, StudentsLike, make_cohort, parse_families)

DAY = 86400.0
FLAT = SimulatorConfig(learning_rate_sigma=0.0, forgetting_rate_sigma=0.0, difficulty_sigma=0.0)


def _one(cls, **kwargs):
    return cls(num_students=1, num_concepts=2, interactions=3, seed=5, config=FLAT, **kwargs)


def test_builtin_recall_halves_after_the_first_half_life():
    cohort = _one(Cohort)
    t0 = cohort.schedule()[:, 0]
    cohort.review(np.array([0]), t0)
    # first review: h = base_half_life_s * lr / d = 1 day (lr = d = 1); recall 2 ** -(elapsed / h)
    assert cohort.recall_probability(t0 + DAY)[0, 0] == pytest.approx(0.5)
    assert cohort.recall_probability(t0 + 2 * DAY)[0, 0] == pytest.approx(0.25)
    assert cohort.recall_probability(t0 + DAY)[0, 1] == 0.0


def test_fsrs6_students_read_the_package_defaults_and_follow_its_curve():
    from fsrs.scheduler import DEFAULT_PARAMETERS

    cohort = Fsrs6Cohort(num_students=1, num_concepts=2, interactions=3, seed=5, config=FLAT)
    assert cohort.students.parameters == tuple(float(v) for v in DEFAULT_PARAMETERS)
    flat = make_cohort(family="fitted", students_like=StudentsLike(parameters=DEFAULT_PARAMETERS, learner_sigma=0.0,
                                                                   concept_sigma=0.0),
                       num_students=1, num_concepts=2, interactions=3, seed=5, config=FLAT)
    t0 = flat.schedule()[:, 0]
    outcome = flat.review(np.array([0]), t0)
    assert outcome.grade[0] == 1  # a first review teaches: recall 0, graded Again
    w0, w20 = DEFAULT_PARAMETERS[0], DEFAULT_PARAMETERS[20]
    factor = 0.9 ** (-1.0 / w20) - 1.0
    # 2 whole days later: R = (1 + FACTOR * 2 / S) ** -w20 with S = w0 (the first review's stability for Again)
    assert flat.recall_probability(t0 + 2 * DAY + 60)[0, 0] == pytest.approx((1 + factor * 2 / w0) ** -w20)


def test_actr_recall_is_the_activation_of_pavlik_and_anderson():
    p = ActrConfig(ability_sigma=0.0, difficulty_sigma=0.0)
    cohort = _one(ActrCohort, actr=p)
    times = cohort.schedule()[0]
    cohort.review(np.array([0]), times[:1])
    cohort.review(np.array([0]), times[1:2])

    def psych_gap(gap):
        return min(gap, p.session_s) + p.h * max(gap - p.session_s, 0.0)

    def recall(m):
        return 1.0 / (1.0 + math.exp((p.tau - m) / p.s))

    p1 = psych_gap(times[1] - times[0])  # the second presentation's psychological time (the first is at 0)
    m_before = math.log(max(p1, 1.0) ** -p.a)  # one trace, decay a
    d2 = p.c * math.exp(m_before) + p.a
    gap = times[2] - times[1]  # a scheduled review between counts as the start of a session
    later = p1 + (psych_gap(gap) + psych_gap(DAY - gap) if gap <= DAY else psych_gap(DAY))
    m = math.log(later ** -p.a + (later - p1) ** -d2)
    assert cohort.recall_probability(times[1] + DAY)[0, 0] == pytest.approx(recall(m))


def test_actr_a_review_minutes_after_the_last_adds_less_than_one_a_day_later():
    cohort = ActrCohort(num_students=1, num_concepts=2, interactions=3, seed=5, config=FLAT)
    t0 = cohort.schedule()[:, 0]
    cohort.review(np.array([0]), t0)
    massed = cohort.expected_recall_gain(t0 + 60, horizon_s=DAY)[0, 0]
    spaced = cohort.expected_recall_gain(t0 + DAY, horizon_s=DAY)[0, 0]
    assert 0 <= massed < spaced


def test_hlr_recall_is_two_to_the_minus_lag_over_the_regressed_half_life():
    p = HlrConfig(learner_sigma=0.0, concept_sigma=0.0)
    cohort = _one(HlrCohort, hlr=p)
    t0 = cohort.schedule()[:, 0]
    cohort.review(np.array([0]), t0)  # teaches: counts stay 0
    h = 2 ** (p.theta[0] * 1 + p.theta[1] * 1 + p.theta[2])  # x = (sqrt(1+0), sqrt(1+0), 1), days
    assert cohort.recall_probability(t0 + DAY)[0, 0] == pytest.approx(2 ** (-1.0 / h))
    cohort._outcome_u[:] = 0.0  # the next review is correct whatever its recall
    cohort.review(np.array([0]), t0 + 2 * DAY)
    right = 1 - 2 ** (-2 * DAY / p.massing_half_life_s)  # counted all but 2**-48
    h2 = 2 ** (p.theta[0] * math.sqrt(1 + right) + p.theta[1] + p.theta[2])
    assert cohort.right[0, 0] == pytest.approx(right)
    assert cohort.recall_probability(t0 + 3 * DAY)[0, 0] == pytest.approx(2 ** (-1.0 / h2))


def test_hlr_a_review_a_minute_after_the_last_counts_about_one_percent():
    cohort = _one(HlrCohort)
    assert cohort.counted(np.array([60.0, 3600.0])) == pytest.approx([1 - 2 ** (-1 / 60), 0.5])


@pytest.mark.parametrize("family", ["builtin", "fsrs6", "actr", "hlr"])
def test_every_family_shares_the_schedule_and_its_gain_is_finite(family):
    cohort = make_cohort(family=family, num_students=4, num_concepts=3, interactions=5, seed=2, held_out=True)
    builtin = Cohort(num_students=4, num_concepts=3, interactions=5, seed=2, held_out=True)
    assert np.array_equal(cohort.schedule(), builtin.schedule())
    times = cohort.schedule()
    for k in range(5):
        gain = cohort.expected_recall_gain(times[:, k], horizon_s=DAY)
        assert gain.shape == (4, 3) and np.isfinite(gain).all()
        cohort.review(np.array([0, 1, 2, k % 3]), times[:, k])
    recall = cohort.recall_probability(times[:, -1] + DAY)
    assert ((0 <= recall) & (recall <= 1)).all()


def test_parse_families_names_the_bad_one():
    assert parse_families("builtin, actr,hlr,actr") == ("builtin", "actr", "hlr")
    assert parse_families(None) == ("builtin",)
    assert set(FAMILIES) == {"builtin", "fsrs6", "fitted", "actr", "hlr"}
    with pytest.raises(ValueError, match="families: unknown student family 'power'"):
        parse_families("builtin,power")


def test_the_fitted_family_needs_a_curriculums_parameters():
    with pytest.raises(ValueError, match="students_like"):
        make_cohort(family="fitted", num_students=2, num_concepts=2, interactions=2, seed=1)


def test_a_mixed_log_keeps_each_learner_and_uses_every_family():
    single = generate_logs(num_users=24, interactions=6, num_concepts=4, seed=3)
    mixed = generate_logs(num_users=24, interactions=6, num_concepts=4, seed=3, families="builtin,actr,hlr,fsrs6")
    again = generate_logs(num_users=24, interactions=6, num_concepts=4, seed=3, families=["builtin"])
    assert np.array_equal(single.t, mixed.t)  # the same students' times
    assert np.array_equal(single.behaviour_policy, mixed.behaviour_policy)
    assert np.array_equal(single.correct, again.correct) and np.array_equal(single.concept, again.concept)
    assert not np.array_equal(single.correct, mixed.correct)
