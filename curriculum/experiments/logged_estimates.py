"""Off-policy estimates from the recommendation log: how a policy version would do on a curriculum's real learners,
estimated from the recommendations other versions served (with their logged propensities) and their outcomes,
before it serves anyone (curriculum.experiments.off_policy's estimators on the log).

The log read: a curriculum's served recommendations from ``since`` on; above ``MAX_DECISIONS`` of them (the
page-load cap), those of a uniform random sample of its learners (seeded, ``assignment.sample``; whole learners, so
that each episode is complete) holding at most that many; of these the decisions with a known outcome are used. Per
decision t of learner i:

* reward r_t: the outcome (correct = 1) of the review that followed it (the one carrying its recommendation_id,
  else the learner's first review of the recommended concept at or after the decision; experiments.outcomes'
  rule);
* propensity pi_b(a_t | s_t): the logged one;
* target probability pi_e(a_t | s_t): the version's serving distribution (its DTLite scores under the curriculum's
  exploration rule, as serving would draw) at the learner's state at the decision, rebuilt from the reviews before it;
* direct method for doubly robust: q(s_t, a) = the memory model's estimated recall of concept a at the decision
  (the serving encoder's), v(s_t) = sum_a pi_e(a | s_t) q(s_t, a); by default (``memory_model+future``) both plus
  the log's mean reward-to-go after step t (off_policy.mean_reward_after: still unbiased, smaller variance).

Episodes are the learners' decision sequences; each estimate has a 95% bootstrap interval over learners and Kish's
effective sample size (off_policy). ``on_policy``: the version's own served decisions' mean return per learner
(the same quantity, observed), when it served any in the window.
"""
from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from django.db.models import Count

from .. import selectors, serving
from ..learner_states import histories
from ..models import Learner, PolicyModel, RecommendationLog
from .exploration import Exploration
from .assignment import sample
from .off_policy import ESTIMATORS, Estimate, episodes_from_rows, mean_reward_after
from .outcomes import Mean, _recall_next, _reviews

MAX_DECISIONS = 2000
DIRECT_METHODS = ("memory_model", "memory_model+future")
BOOTSTRAP_SAMPLES = 500  # at page load; bench/off_policy.py uses the module default


@dataclass(frozen=True)
class LoggedEstimates:
    """A version's estimates on the log (``estimates``: {"ips", "snips", "pdis", "dr"} -> Estimate, those that could
    be computed), the decisions and learners used, the observed mean return per learner of its own decisions
    (``on_policy``, None when it served none), and ``error``: why there is no estimate, or why an estimator gave none
    (no decision with an outcome, a version that cannot load, SNIPS with every weight 0...)."""

    version: int
    decisions: int
    learners: int
    estimates: dict[str, Estimate]
    on_policy: Mean | None
    error: str = ""


def logged_estimates(*, policy: PolicyModel, since: dt.datetime | None = None, until: dt.datetime | None = None,
                     arm=None, max_decisions: int = MAX_DECISIONS, seed: int = 0,
                     bootstrap_samples: int = BOOTSTRAP_SAMPLES,
                     direct_method: str = "memory_model+future") -> LoggedEstimates:
    """The off-policy estimates of ``policy``'s value on its curriculum's logged recommendations (see the module);
    ``arm``: only the decisions one experiment arm served (e.g. the control's, to estimate a candidate from them);
    ``seed``: the learner sample's (above ``max_decisions``) and the bootstrap's; ``direct_method``: one of
    DIRECT_METHODS (see the module). ValueError naming it otherwise."""
    if direct_method not in DIRECT_METHODS:
        raise ValueError(f"direct_method: expected one of {', '.join(DIRECT_METHODS)}, got {direct_method!r}")
    curriculum = policy.curriculum
    rows = RecommendationLog.objects.filter(curriculum=curriculum, served=True)
    if arm is not None:
        rows = rows.filter(arm=arm)
    if since is not None:
        rows = rows.filter(at__gte=since)
    if until is not None:
        rows = rows.filter(at__lte=until)
    rows = _sampled_rows(rows, max_decisions=max_decisions, seed=seed)
    if not rows:
        return LoggedEstimates(policy.version, 0, 0, {}, None, "no logged recommendations in the window")
    served = serving.policies.get(curriculum_id=curriculum.pk, policy_id=policy.pk) if policy.status == "active" \
        else serving.arm_policies.get(curriculum_id=policy.pk, policy_id=policy.pk)
    if served is None:
        return LoggedEstimates(policy.version, 0, 0, {}, None, f"v{policy.version} cannot be loaded for serving")
    ids = dict(Learner.objects.filter(external_id__in={r[2] for r in rows}).values_list("external_id", "id"))
    start, end = rows[0][4], until
    external = {v: k for k, v in ids.items()}
    reviews = {external[lid]: entry for lid, entry in _reviews(curriculum_id=curriculum.pk,
                                                               learner_ids=list(ids.values()), start=start, end=end).items()}
    keys = selectors.concept_keys(curriculum_id=curriculum.pk)
    positions = {k: i for i, k in enumerate(keys)}
    spec = served.spec.widened(num_concepts=len(keys))
    # the concepts the version scores (serving's rule: its own, or all the curriculum's when it scores unseen ones)
    allowed = list(range(len(served.concept_keys) if spec is served.spec else len(keys)))
    exploration = Exploration(curriculum.exploration, curriculum.exploration_temperature, curriculum.exploration_epsilon)
    found = histories(learner_ids=list(ids.values()), curriculum_id=curriculum.pk)

    kept = []  # (learner, reward, logged propensity, concept position, served by this version)
    states, nows, chosen, on_policy = [], [], [], defaultdict(float)
    by_learner: dict[str, list] = defaultdict(list)
    for row in rows:
        by_learner[row[2]].append(row)
    for learner, decisions in by_learner.items():
        outcome = _per_decision_outcomes(decisions, reviews)
        state = spec.new_state()
        history = found.get(ids.get(learner), [])
        h = 0
        for row in decisions:
            while h < len(history) and history[h].at < row[4]:
                r = history[h]
                if r.position < spec.num_concepts:
                    state.observe(concept=r.position, t=r.at.timestamp(), correct=r.correct, grade=r.grade)
                h += 1
            reward = outcome.get(row[0])
            if reward is None or row[3] not in positions or positions[row[3]] not in allowed:
                continue
            kept.append((learner, reward, row[6], positions[row[3]], row[7] == policy.pk))
            states.append(_snapshot(state))
            nows.append(row[4].timestamp())
            chosen.append(positions[row[3]])
            if row[7] == policy.pk:
                on_policy[learner] += reward
    if not kept:
        return LoggedEstimates(policy.version, 0, 0, {}, None, "no logged recommendation has a following review yet")
    target, q, v = _target(served, states, nows=nows, chosen=chosen, allowed=allowed, exploration=exploration)
    learners = np.array([k[0] for k in kept])
    mask, (reward, propensity, target_p, q_hat, v_hat) = episodes_from_rows(
        learners, [k[1] for k in kept], [k[2] for k in kept], target, q, v)
    if direct_method == "memory_model+future":
        after = mean_reward_after(reward, mask)[None, :]
        q_hat, v_hat = np.where(mask, q_hat + after, 0.0), np.where(mask, v_hat + after, 0.0)
    common = {"propensity": np.where(mask, propensity, 1.0), "target_probability": target_p, "reward": reward,
              "mask": mask, "seed": seed, "bootstrap_samples": bootstrap_samples}
    estimates, refused = {}, []
    for name, estimator in ESTIMATORS.items():
        try:
            estimates[name] = estimator(**common, **({"q_hat": q_hat, "v_hat": v_hat} if name == "dr" else {}))
        except ValueError as exc:  # e.g. SNIPS when the version never takes the logged concepts (argmax logs)
            refused.append(f"{name}: {exc}")
    return LoggedEstimates(policy.version, len(kept), int(mask.shape[0]), estimates,
                           Mean.of(on_policy.values()) if on_policy else None, "; ".join(refused))


def _sampled_rows(rows, *, max_decisions: int, seed: int) -> list[tuple]:
    """The window's rows (time order) of a uniform seeded sample of its learners holding at most ``max_decisions``
    decisions: all of them when they fit; else the learners in ``assignment.sample``'s random order, while their
    decisions fit (a learner whose decisions alone exceed the cap: its newest ``max_decisions``)."""
    columns = ("id", "arm_id", "learner", "concept", "at", "served", "propensity", "policy_id")
    counts = dict(rows.order_by().values("learner").annotate(n=Count("id")).values_list("learner", "n"))
    if sum(counts.values()) <= max_decisions:
        return list(rows.order_by("at", "id").values_list(*columns))
    chosen, total = [], 0
    for learner in sample(counts, len(counts), seed=seed):
        if total + counts[learner] > max_decisions:
            break
        chosen.append(learner)
        total += counts[learner]
    if not chosen:
        first = sample(counts, 1, seed=seed)
        return list(rows.filter(learner__in=first).order_by("-at", "-id").values_list(*columns)[:max_decisions])[::-1]
    out = []
    for start in range(0, len(chosen), 500):
        out += rows.filter(learner__in=chosen[start:start + 500]).order_by().values_list(*columns)
    return sorted(out, key=lambda r: (r[4], str(r[0])))


def _per_decision_outcomes(decisions, reviews) -> dict:
    out = {}
    for row in decisions:
        value = _recall_next([row[:6]], reviews)
        if value:
            out[row[0]] = next(iter(value.values()))
    return out


def _snapshot(state):
    # the state at the decision: later reviews of the same learner go on changing the walking one
    return copy.deepcopy(state)


def _target(served, states, *, nows, chosen, allowed, exploration):
    """(pi_e of the logged concept, q of it, v = E_pi_e q) per decision, in DTLite batches."""
    target, q, v = [], [], []
    index = {p: i for i, p in enumerate(allowed)}
    for start in range(0, len(states), serving._LEARNERS_PER_CALL):
        part = states[start:start + serving._LEARNERS_PER_CALL]
        greedy, probs = serving.policy_distribution(served, part, nows=nows[start:start + len(part)], allowed=allowed,
                                                    all_concepts=True)
        with np.errstate(divide="ignore"):
            preferences = np.log(np.asarray(probs, dtype=np.float64)[:, allowed])
        pi = exploration.distribution(preferences=preferences, greedy=np.array([index[int(g)] for g in greedy]))
        for b, state in enumerate(part):
            recall = state.encoder.recall(state.memory, np.array([nows[start + b]]))[0][allowed]
            a = index[chosen[start + b]]
            target.append(float(pi[b, a]))
            q.append(float(recall[a]))
            v.append(float(pi[b] @ recall))
    return np.array(target), np.array(q), np.array(v)
