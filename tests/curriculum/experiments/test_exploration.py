"""Exploration: the serving distribution of each rule, and draws whose frequencies and logged propensities are that
distribution's."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from curriculum.experiments.exploration import Exploration, draw

RULES = st.sampled_from([Exploration("argmax"), Exploration("softmax", temperature=0.5),
                         Exploration("softmax", temperature=3.0), Exploration("epsilon_greedy", epsilon=0.2),
                         Exploration("epsilon_greedy", epsilon=1.0)])
PREFERENCES = st.integers(1, 6).flatmap(lambda k: arrays(np.float64, (3, k), elements=st.floats(-30, 5)))


@settings(max_examples=200, deadline=None)
@given(rule=RULES, preferences=PREFERENCES, seed=st.integers(0, 2**32 - 1))
def test_every_rule_gives_a_distribution_and_draws_log_its_probability(rule, preferences, seed):
    greedy = preferences.argmax(axis=1)
    p = rule.distribution(preferences=preferences, greedy=greedy)

    assert p.shape == preferences.shape and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    chosen, propensity = draw(p, rng=np.random.default_rng(seed))
    assert (propensity > 0).all()
    np.testing.assert_array_equal(propensity, p[np.arange(3), chosen])


def test_the_rules_match_their_formulas():
    u = np.log(np.array([[0.7, 0.2, 0.1]]))
    greedy = np.array([0])

    np.testing.assert_array_equal(Exploration("argmax").distribution(preferences=u, greedy=greedy), [[1, 0, 0]])
    np.testing.assert_allclose(Exploration("epsilon_greedy", epsilon=0.3).distribution(preferences=u, greedy=greedy),
                               [[0.7 + 0.1, 0.1, 0.1]])
    # temperature 1 on log-probabilities is the policy's own distribution; 0.5 squares it (renormalised)
    np.testing.assert_allclose(Exploration("softmax", temperature=1).distribution(preferences=u, greedy=greedy),
                               [[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(Exploration("softmax", temperature=0.5).distribution(preferences=u, greedy=greedy),
                               [[0.49, 0.04, 0.01]] / np.float64(0.54))


def test_draw_frequencies_match_the_distribution():
    p = np.tile([[0.5, 0.0, 0.3, 0.15, 0.05]], (20_000, 1))

    chosen, propensity = draw(p, rng=np.random.default_rng(3))

    frequencies = np.bincount(chosen, minlength=5) / len(chosen)
    # 4 standard errors of a proportion at 20,000 draws is at most 0.0142
    np.testing.assert_allclose(frequencies, p[0], atol=0.0142)
    assert frequencies[1] == 0
    np.testing.assert_array_equal(propensity, p[0][chosen])


def test_a_softmax_preference_of_minus_infinity_is_never_drawn():
    p = Exploration("softmax").distribution(preferences=np.array([[0.0, -np.inf, 1.0]]), greedy=np.array([2]))
    assert p[0, 1] == 0


@pytest.mark.parametrize("kwargs, field", [({"rule": "greedy"}, "exploration"),
                                           ({"rule": "softmax", "temperature": 0}, "exploration_temperature"),
                                           ({"rule": "epsilon_greedy", "epsilon": 1.5}, "exploration_epsilon")])
def test_settings_out_of_range_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Exploration(**kwargs)
