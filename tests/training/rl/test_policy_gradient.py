"""Policy-gradient fine-tuning (training/rl/policy_gradient.py): the leave-one-out advantages by hand, the contexts
the gradient reads are the ones the rollout saw, the log-probabilities are the sampled policy's (DTLite's), and a
fine-tuned model still exports to an exact DTLite."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from training.rl.dt import DecisionTransformer
from training.rl.policy_gradient import (
    PolicyGradientConfig, episode_log_probs, episode_windows, family_shares, fine_tune, lite_of, mixed_rollouts,
    rloo_advantages, rollouts, window_batches,
)
from training.rl.trainer import default_model_config, target_return

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny(dataset):
    """A small random model for the conftest's trajectories (6 concepts, the encoder's per-concept features and the
    summary state token, a 10-step context), its DTLite and the export's arguments."""
    torch.manual_seed(3)
    config = default_model_config(dataset, hidden_dim=16, num_layers=2, num_heads=2, context_length=10,
                                  concept_head_dim=8)
    model = DecisionTransformer(config).eval()
    with torch.no_grad():  # larger than init-sized weights, so that the policy is far from uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    export = {"concept_keys": list(dataset.concept_keys), "encoder": dataset.encoder,
              "target_return": target_return(dataset, quantile=0.9)}
    return model, export


def test_rloo_advantages_by_hand():
    returns = np.array([[0.5, 0.7], [0.3, 0.7], [0.4, 0.4]])  # 3 samples x 2 students
    # student 0: 0.5 - (0.3 + 0.4) / 2, 0.3 - 0.45, 0.4 - 0.4; student 1: 0.7 - 0.55, 0.7 - 0.55, 0.4 - 0.7
    raw = np.array([[0.15, 0.15], [-0.15, 0.15], [0.0, -0.3]])
    np.testing.assert_allclose(rloo_advantages(returns), raw / np.sqrt(0.03), atol=1e-12)
    np.testing.assert_array_equal(rloo_advantages(np.full((4, 3), 0.6)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="samples >= 2"):
        rloo_advantages(np.ones((1, 5)))


def test_window_batches_are_the_contexts_the_rollout_saw():
    E, T, K, m = 3, 30, 10, 6
    tag = np.arange(E)[:, None] * 1000 + np.arange(T)[None, :]  # [E, T]: episode and step of every value
    states = np.repeat(tag[..., None], 2, axis=2).astype(np.float32)
    windows = window_batches(states, tag.astype(np.float32), tag, context=K, max_timestep=25, steps_per_episode=m,
                             rng=np.random.default_rng(0))
    ((rtg, first_states, actions, timesteps), skip), = windows.segments
    assert skip == 0
    np.testing.assert_array_equal(actions, tag[:, :K])
    np.testing.assert_array_equal(first_states[..., 0], tag[:, :K])
    np.testing.assert_array_equal(timesteps, np.broadcast_to(np.arange(K), (E, K)))
    l_rtg, l_states, l_actions, l_timesteps = windows.later
    assert l_actions.shape == (E * m, K) and windows.weight == (T - K) / m
    np.testing.assert_array_equal(windows.episode, np.repeat(np.arange(E), m))
    step = l_actions % 1000
    assert (l_actions // 1000 == windows.episode[:, None]).all()  # every row from its own episode
    assert (np.diff(step, axis=1) == 1).all() and (step[:, -1] >= K).all()  # K consecutive steps ending at t >= K
    for e in range(E):  # the m decisions of an episode are distinct
        assert len(set(step[windows.episode == e, -1])) == m
    np.testing.assert_array_equal(l_timesteps, np.minimum(step, 24))  # clamped as the rollout clamps them
    np.testing.assert_array_equal(l_rtg, l_actions.astype(np.float32))
    only_first = window_batches(states, tag.astype(np.float32), tag, context=K, max_timestep=25, steps_per_episode=0,
                                rng=np.random.default_rng(0))
    assert only_first.later is None and only_first.weight == 0.0
    with pytest.raises(ValueError, match="must agree"):
        window_batches(states[:, :5], tag.astype(np.float32), tag, context=K, max_timestep=25, steps_per_episode=m,
                       rng=np.random.default_rng(0))


def test_the_last_state_tokens_logits_and_a_whole_episodes_equal_the_forward_on_each_context(tiny, dataset):
    """action_logits(last_only=True) is forward's last state token; action_logits(whole_episode=True) over 3 contexts' worth of
    steps gives at every step t the logits of the forward on the context ending at t (local attention: the receptive
    field fits in the context), so the gradient can read a whole episode in one pass."""
    model, _ = tiny
    rng = np.random.default_rng(1)
    B, K = 5, model.config.context_length
    T = 3 * K
    states = torch.as_tensor(dataset.states[: B * T].reshape(B, T, -1).astype(np.float32))
    rtg = torch.as_tensor(rng.random((B, T), dtype=np.float32))
    actions = torch.as_tensor(rng.integers(0, model.config.action_dim, (B, T)))
    timesteps = torch.as_tensor(np.broadcast_to(np.arange(7, 7 + T), (B, T)).copy())
    with torch.no_grad():
        whole = model.action_logits(rtg, states, actions, timesteps, whole_episode=True)
        for t in (0, K - 1, K, 2 * K + 3, T - 1):
            lo = max(0, t - K + 1)
            window = (rtg[:, lo:t + 1], states[:, lo:t + 1], actions[:, lo:t + 1], timesteps[:, lo:t + 1])
            full = model(*window, torch.ones_like(window[2]))[:, -1]
            torch.testing.assert_close(model.action_logits(*window, last_only=True), full, atol=1e-6, rtol=0)
            torch.testing.assert_close(whole[:, t], full, atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="exceeds context_length"):
            model(rtg, states, actions, timesteps)
    full_attention = DecisionTransformer(dataclasses.replace(model.config, attention_window=None)).eval()
    with pytest.raises(ValueError, match="need a model with attention_window"):
        full_attention.action_logits(rtg, states, actions, timesteps, whole_episode=True)


@pytest.mark.parametrize("window", ["local", "full"])
def test_log_probabilities_are_those_of_the_policy_that_was_rolled_out(tiny, window):
    """The gradient's log pi(a_t | context_t), summed over every step, equals the same sum from DTLite's own logits
    on each decision's context, rebuilt independently from the recorded steps: on-policy, step for step. Local
    attention: every episode whole in one forward; full attention: the first context and every later window."""
    model, export = tiny
    if window == "full":
        model = copy.deepcopy(model)
        model.config = dataclasses.replace(model.config, attention_window=None)
    lite = lite_of(model, **export)
    T, K, temperature = 24, model.config.context_length, 0.7
    episodes = rollouts(lite, family="builtin", students=4, interactions=T, samples=2, seed=11,
                        temperature=temperature)
    assert episodes.states.shape[:3] == (2, 4, T) and episodes.returns.shape == (2, 4)
    assert not np.array_equal(episodes.actions[0], episodes.actions[1])  # the samples' draws differ
    states = episodes.states.reshape(8, T, -1)
    rtg, actions = episodes.returns_to_go.reshape(8, T), episodes.actions.reshape(8, T)
    windows = episode_windows(model, states, rtg, actions, steps_per_episode=T - K, rng=np.random.default_rng(0))
    (first, skip), = windows.segments
    assert (windows.later is None) == (window == "local") and skip == 0
    assert first[0].shape[1] == (T if window == "local" else K)
    with torch.no_grad():
        ours = episode_log_probs(model, windows, temperature=temperature).numpy()
    expected = np.zeros(8)
    for t in range(T):
        lo = max(0, t - K + 1)
        logits = lite.last_logits(rtg[:, lo:t + 1], states[:, lo:t + 1], actions[:, lo:t + 1],
                                  np.broadcast_to(np.arange(lo, t + 1), (8, t + 1 - lo)).astype(np.int64))
        z = logits / temperature
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        expected += logp[np.arange(8), actions[:, t]]
    np.testing.assert_allclose(ours, expected, atol=1e-3)
    assert (expected > -50).all()  # every recorded action had a real probability under the sampled policy


def test_long_episodes_are_read_in_overlapping_segments_with_the_same_log_probabilities(tiny):
    """Past SEGMENT_STEPS an episode is read in segments (each after the context - 1 steps before it, counted from
    there): every step counted once, and the same sum as one forward over the whole episode."""
    from training.rl.policy_gradient import episode_segments

    model, _ = tiny
    rng = np.random.default_rng(4)
    E, T, K = 3, 47, model.config.context_length
    states = rng.random((E, T, model.config.state_dim), dtype=np.float32)
    rtg = rng.random((E, T), dtype=np.float32)
    actions = rng.integers(0, model.config.action_dim, (E, T))
    whole = episode_segments(states, rtg, actions, context=K, max_timestep=model.config.max_timestep)
    parts = episode_segments(states, rtg, actions, context=K, max_timestep=model.config.max_timestep,
                             segment_steps=K + 5)
    assert len(whole.segments) == 1 and len(parts.segments) > 3
    counted = [arrays[3][0, skip:].tolist() for arrays, skip in parts.segments]  # the timesteps counted
    assert sum(counted, []) == list(range(T))
    assert all(arrays[0].shape[1] <= K + 5 for arrays, _ in parts.segments)
    with torch.no_grad():
        one = episode_log_probs(model, whole, temperature=0.5)
        many = episode_log_probs(model, parts, temperature=0.5)
    torch.testing.assert_close(many, one, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="segment_steps must exceed"):
        episode_segments(states, rtg, actions, context=K, max_timestep=50, segment_steps=K - 1)


def test_rollouts_in_worker_processes_are_the_same_as_in_this_one(tiny):
    """A round's samples run in a worker pool (fine_tune's ``processes``) give exactly the episodes of this process."""
    from training.rl.cpu_threads import worker_pool

    model, export = tiny
    lite = lite_of(model, **export)
    here = rollouts(lite, family="hlr", students=3, interactions=12, samples=2, seed=5, temperature=0.5)
    with worker_pool(2) as pool:
        there = rollouts(lite, family="hlr", students=3, interactions=12, samples=2, seed=5, temperature=0.5,
                         pool=pool)
    for name in ("states", "returns_to_go", "actions", "returns"):
        np.testing.assert_array_equal(getattr(here, name), getattr(there, name))


def test_fitted_students_are_those_the_policys_encoder_describes(tiny):
    """Family "fitted" in the rollouts and the selection: FSRS-6 students with the encoder's fitted parameters (the
    evaluation's "fitted" students after synthetic training). At a near-zero temperature the sampled rollout is the
    greedy one, so its returns equal the evaluation's final recall of the same training-domain students; an
    encoder without fitted FSRS-6 parameters is refused."""
    from fsrs.scheduler import DEFAULT_PARAMETERS

    from training.rl.encoder import EncoderConfig
    from training.rl.evaluation import final_recall

    model, export = tiny
    encoder = {**export["encoder"], "fsrs6_parameters": [float(w) * 1.1 for w in DEFAULT_PARAMETERS]}
    lite = lite_of(model, **dict(export, encoder=encoder))
    episodes = rollouts(lite, family="fitted", students=4, interactions=15, samples=2, seed=8, temperature=1e-6)
    greedy = final_recall(policy_name="dt", num_concepts=model.config.action_dim, students=4, interactions=15,
                          seed=8, encoder=EncoderConfig.from_dict(encoder), model=lite, family="fitted",
                          held_out=False)
    np.testing.assert_allclose(episodes.returns, np.stack([greedy, greedy]), rtol=0, atol=1e-12)
    builtin = rollouts(lite, family="builtin", students=4, interactions=15, samples=2, seed=8, temperature=1e-6)
    assert not np.allclose(builtin.returns, episodes.returns)  # another memory law
    with pytest.raises(ValueError, match="students_like"):
        rollouts(lite_of(model, **export), family="fitted", students=4, interactions=15, samples=2, seed=8,
                 temperature=1e-6)


def test_fine_tuning_moves_the_weights_deterministically_and_exports_an_exact_dtlite(tiny):
    model, export = copy.deepcopy(tiny[0]), tiny[1]
    initial = {name: t.clone() for name, t in model.state_dict().items()}
    config = PolicyGradientConfig(rounds=2, students=5, samples=2, interactions=16, learning_rate=1e-3,
                                  temperature=1.0, steps_per_episode=3, updates=2)
    seen = []
    runs = []
    for _ in range(2):
        model.load_state_dict(initial)
        history = fine_tune(model, concept_keys=export["concept_keys"], encoder=export["encoder"],
                            target_return=export["target_return"], config=config, seed=4,
                            on_round=lambda r, figures, lite: seen.append((r, figures["family"], lite)))
        runs.append({name: t.clone() for name, t in model.state_dict().items()})
    assert [h["round"] for h in history] == [0, 1, 2] and [s[0] for s in seen] == [1, 2, 1, 2]
    assert all(np.isfinite(h["loss"]) and h["grad_norm"] > 0 for h in history[1:])
    # scored before the first round and after the last (select_every 5 > 2 rounds); one set of weights kept
    assert ["selection_score" in h for h in history] == [True, False, True]
    assert sum(bool(h.get("kept")) for h in history) == 1
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in initial)  # a seed gives the same weights
    assert not model.training
    lite = lite_of(model, **export)
    rng = np.random.default_rng(2)
    B, K = 3, model.config.context_length
    inputs = (rng.random((B, K), dtype=np.float32), rng.random((B, K, model.config.state_dim), dtype=np.float32),
              rng.integers(0, model.config.action_dim, (B, K)), np.broadcast_to(np.arange(K), (B, K)).copy())
    with torch.no_grad():
        torch_logits = model(*(torch.as_tensor(x) for x in inputs)).numpy()
    assert np.abs(lite.action_logits(*inputs) - torch_logits).max() <= TOLERANCE


@pytest.mark.parametrize("fields, message", [
    ({"samples": 1}, "samples must be at least 2"),
    ({"samples": 17}, "and at most 16"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"rounds": 0}, "rounds must be at least 1"),
    ({"families": ("builtin", "nonesuch")}, "unknown student family 'nonesuch'"),
])
def test_settings_out_of_range_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        PolicyGradientConfig(**fields)



@pytest.mark.parametrize("scores, kept", [([0.5, 0.7, 0.6], 1), ([0.5, 0.4, 0.45], 0), ([0.5, 0.6, 0.8], 2)])
def test_the_weights_kept_are_those_that_taught_the_selection_students_best(tiny, monkeypatch, scores, kept):
    """Scored before the first round and after each (select_every 1): the model ends with the best-scored round's
    weights, the offline ones when no round beat them; the history marks that round."""
    import training.rl.policy_gradient as pg

    model, export = copy.deepcopy(tiny[0]), tiny[1]
    initial = {name: t.clone() for name, t in model.state_dict().items()}
    asked = iter(scores)
    monkeypatch.setattr(pg, "selection_score", lambda lite, **_: next(asked))
    weights = {0: initial}
    config = PolicyGradientConfig(rounds=2, students=4, samples=2, interactions=14, learning_rate=1e-3,
                                  temperature=1.0, steps_per_episode=2, updates=1, select_every=1)
    history = fine_tune(model, concept_keys=export["concept_keys"], encoder=export["encoder"],
                        target_return=export["target_return"], config=config, seed=5,
                        on_round=lambda r, figures, lite: weights.__setitem__(
                            r, {name: t.clone() for name, t in model.state_dict().items()}))
    assert [h.get("kept", False) for h in history] == [r == kept for r in range(3)]
    assert [h["selection_score"] for h in history] == scores
    assert not torch.equal(weights[1]["blocks.0.attn.c_attn.weight"], initial["blocks.0.attn.c_attn.weight"])
    assert all(torch.equal(t, weights[kept][name]) for name, t in model.state_dict().items())


def test_family_shares_split_the_students_as_equally_as_they_divide():
    assert family_shares(10, 4) == [3, 3, 2, 2] and family_shares(8, 4) == [2, 2, 2, 2] and family_shares(3, 1) == [3]
    with pytest.raises(ValueError, match="at least one each"):
        family_shares(3, 4)
    with pytest.raises(ValueError, match="at least one student per family"):
        PolicyGradientConfig(families=("builtin", "actr", "hlr"), students=2, mixed_rounds=True)


def test_a_mixed_round_holds_each_familys_rollouts_with_its_own_advantages(tiny):
    """mixed_rollouts: each family's share of the students is exactly that family's own rollouts (the same cohort,
    policy draws and returns), in the order of the families, and each family's advantages are rloo_advantages of its
    returns alone (standardised within the family)."""
    model, export = tiny
    lite = lite_of(model, **export)
    families = ("builtin", "actr", "hlr")
    episodes, advantages = mixed_rollouts(lite, families=families, students=7, interactions=12, samples=3, seed=11,
                                          temperature=1.0)
    assert episodes.actions.shape == (3, 7, 12) and advantages.shape == (3, 7)
    start = 0
    for family, share in zip(families, [3, 2, 2]):
        alone = rollouts(lite, family=family, students=share, interactions=12, samples=3, seed=11, temperature=1.0)
        part = slice(start, start + share)
        np.testing.assert_array_equal(episodes.actions[:, part], alone.actions)
        np.testing.assert_array_equal(episodes.states[:, part], alone.states)
        np.testing.assert_array_equal(episodes.returns[:, part], alone.returns)
        np.testing.assert_allclose(advantages[:, part], rloo_advantages(alone.returns), rtol=0, atol=0)
        assert abs(advantages[:, part].std() - 1.0) < 1e-9
        start += share


def test_fine_tuning_with_mixed_rounds_trains_on_every_family_each_round(tiny, monkeypatch):
    import training.rl.policy_gradient as pg

    model, export = copy.deepcopy(tiny[0]), tiny[1]
    config = PolicyGradientConfig(rounds=2, students=4, samples=2, interactions=12, learning_rate=1e-3,
                                  temperature=1.0, updates=1, families=("builtin", "hlr"), mixed_rounds=True)
    initial = {name: t.clone() for name, t in model.state_dict().items()}
    after_first = {}
    rolled = []
    real = pg.rollout_sample
    monkeypatch.setattr(pg, "rollout_sample", lambda *a, **kw: rolled.append(
        (kw["seed"], kw["family"], kw["students"], kw["sample"])) or real(*a, **kw))
    history = fine_tune(model, concept_keys=export["concept_keys"], encoder=export["encoder"],
                        target_return=export["target_return"], config=config, seed=6,
                        on_round=lambda r, figures, lite: after_first or after_first.update(
                            {name: t.clone() for name, t in model.state_dict().items()}))
    assert rolled == [(pg.ROUND_SEED_BASE * r + 6, family, 2, k) for r in (1, 2) for family in ("builtin", "hlr")
                      for k in (0, 1)]  # every family, its share of the students, every sample, each round
    assert [h.get("family") for h in history[1:]] == ["builtin,hlr", "builtin,hlr"]
    assert all(np.isfinite(h["loss"]) and h["grad_norm"] > 0 for h in history[1:])
    assert any(not torch.equal(t, initial[name]) for name, t in after_first.items())
    in_turn = fine_tune(copy.deepcopy(tiny[0]), concept_keys=export["concept_keys"], encoder=export["encoder"],
                        target_return=export["target_return"], seed=6,
                        config=dataclasses.replace(config, mixed_rounds=False))
    assert [h.get("family") for h in in_turn[1:]] == ["builtin", "hlr"]


def test_the_worst_margin_selection_scores_the_family_that_trails_its_best_heuristic(tiny, monkeypatch):
    """selection_score with references: the smallest over the families of the policy's recall minus the family's best
    heuristic on the same students; without: the mean. selection_references is the best of evaluation.HEURISTICS."""
    import training.rl.policy_gradient as pg
    from training.rl.evaluation import HEURISTICS

    lite = lite_of(*tiny[0:1], **tiny[1])
    monkeypatch.setattr(pg, "selection_recalls", lambda lite, **_: {"builtin": 0.70, "actr": 0.50, "hlr": 0.40})
    families = ("builtin", "actr", "hlr")
    args = dict(families=families, students=3, interactions=10, seed=1)
    assert pg.selection_score(lite, **args) == pytest.approx(0.5333333333)
    assert pg.selection_score(lite, **args, references={"builtin": 0.65, "actr": 0.52, "hlr": 0.38}) == \
        pytest.approx(-0.02)
    seen = []
    real = pg.final_recall

    def recording(**kw):
        seen.append((kw["family"], kw["policy_name"], kw["held_out"]))
        return real(**kw)

    monkeypatch.setattr(pg, "final_recall", recording)
    refs = pg.selection_references(lite, **args)
    assert sorted(seen) == sorted((f, name, False) for f in families for name in HEURISTICS)
    assert set(refs) == set(families) and all(0 <= v <= 1 for v in refs.values())
    for family in families:
        best = max(float(real(policy_name=name, num_concepts=lite.config["action_dim"], students=3, interactions=10,
                              seed=pg.SELECTION_SEED_OFFSET + 1, family=family, held_out=False,
                              encoder=pg.EncoderConfig.from_dict(lite.config["encoder"])).mean())
                   for name in HEURISTICS)
        assert refs[family] == best
    with pytest.raises(ValueError, match="selection must be one of"):
        PolicyGradientConfig(selection="median")


def test_randomised_curricula_give_each_round_its_own_concept_difficulties(tiny, monkeypatch):
    """rollout_sample's curriculum_seed is SimulatorConfig.curriculum_seed (None: the default curriculum, seed 0);
    fine_tune with randomised_curricula draws each round's curriculum from the round's seed (never the default one),
    while the selection's students keep the default curriculum."""
    import training.rl.policy_gradient as pg

    model, export = copy.deepcopy(tiny[0]), tiny[1]
    lite = lite_of(model, **export)
    args = dict(family="builtin", students=4, interactions=12, seed=3, sample=0, temperature=1.0)
    default, zero, other = (pg.rollout_sample(lite, **args, curriculum_seed=c) for c in (None, 0, 5))
    assert all(np.array_equal(a, b) for a, b in zip(default, zero))
    assert not np.array_equal(default[3], other[3])  # other difficulties, other recall
    import training.rl.evaluation as evaluation

    seen, selected = [], []
    real, real_selection = pg.make_cohort, evaluation.make_cohort
    monkeypatch.setattr(pg, "make_cohort", lambda **kw: seen.append(kw.get("config")) or real(**kw))
    monkeypatch.setattr(evaluation, "make_cohort",
                        lambda **kw: selected.append(kw.get("config")) or real_selection(**kw))
    config = PolicyGradientConfig(rounds=2, students=4, samples=2, interactions=12, learning_rate=1e-3,
                                  temperature=1.0, updates=1, randomised_curricula=True)
    fine_tune(model, concept_keys=export["concept_keys"], encoder=export["encoder"],
              target_return=export["target_return"], config=config, seed=6)
    drawn = sorted({c.curriculum_seed for c in seen if c is not None})
    assert drawn == [pg.ROUND_SEED_BASE * r + 6 + pg.CURRICULUM_SEED_OFFSET for r in (1, 2)]
    assert len([c for c in seen if c is not None]) == 2 * config.samples  # the rollouts only
    assert selected and all(c is None for c in selected)  # the selection's students: the default curriculum
