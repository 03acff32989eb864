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
  exploration rule, as serving would draw) at the learner's state at the decision, rebuilt from the reviews before it,
  over the same choice: the concepts the request offered (the log's ``offered``) that the version scores, as serving
  masks them. A logged concept outside that set (one the version does not score, e.g. one added after it was
  trained, chosen by another version or the fallback) has pi_e 0: the decision counts, with weight 0;
* direct method for doubly robust: q(s_t, a) = the memory model's estimated recall of concept a at the decision
  (the serving encoder's), v(s_t) = sum_a pi_e(a | s_t) q(s_t, a); by default (``memory_model+future``) both plus
  the log's mean reward-to-go after step t (off_policy.mean_reward_after: still unbiased, smaller variance).

Episodes are the learners' decision sequences; each estimate has a 95% bootstrap interval over learners (none below
2 learners) and Kish's effective sample size (off_policy). ``on_policy``: the version's own served decisions' mean
return per learner (the same quantity, observed), when it served any in the window.

Decisions left out, counted in ``skipped`` by reason (``SKIPPED``): those whose offered concepts the version scores
none of (serving would hand them to the fallback rule, whose distribution is not the version's), and those logged
before the log recorded ``offered`` (null; migration 0014) among another number of concepts than the version scores:
such a request named candidates, and which ones is unknown. (Those among the same number are read as offering every
concept: right for every decision a request without candidates made.)

No estimate, and ``error`` says why, for a version that cannot be loaded (PolicyCache keeps answering with the version
already in memory, which is not the one asked about) and for exploration settings serving refuses (it serves by argmax
meanwhile: Curriculum.exploration*).
"""
from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count

from .. import selectors, serving
from ..learner_states import histories
from ..models import Learner, PolicyModel, RecommendationLog
from .exploration import Exploration
from .assignment import sample
from .recommendation_log import offered_positions
from .off_policy import ESTIMATORS, Estimate, episodes_from_rows, mean_reward_after
from .outcomes import Mean, _recall_next, _reviews

MAX_DECISIONS = 2000
DIRECT_METHODS = ("memory_model", "memory_model+future")
BOOTSTRAP_SAMPLES = 500  # at page load; bench/off_policy.py uses the module default
# Why a decision with an outcome was left out (see the module): reason -> the words that say it.
SKIPPED = {
    "none_scored": "the version scores none of the concepts the request offered (the fallback would have decided)",
    "not_recorded": "logged before the log recorded the offered concepts (migration 0014), among another number of "
                    "concepts than the version scores",
}


@dataclass(frozen=True)
class LoggedEstimates:
    """A version's estimates on the log (``estimates``: {"ips", "snips", "pdis", "dr"} -> Estimate, those that could
    be computed), the decisions and learners used, the observed mean return per learner of its own decisions
    (``on_policy``, None when it served none), ``error``: why there is no estimate, or why an estimator gave none
    (no decision with an outcome, a version that cannot load, invalid exploration settings, SNIPS with every weight
    0...), and ``skipped``: decisions with an outcome left out, per reason (a key of SKIPPED; see the module)."""

    version: int
    decisions: int
    learners: int
    estimates: dict[str, Estimate]
    on_policy: Mean | None
    error: str = ""
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_note(self) -> str:
        """``skipped`` in words, e.g. "3 decisions left out: logged before ...", "" when none was."""
        return "; ".join(f"{n} decision{'s' if n != 1 else ''} left out: {SKIPPED[reason]}"
                         for reason, n in self.skipped.items() if n)


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
    try:
        exploration = Exploration(curriculum.exploration, curriculum.exploration_temperature,
                                  curriculum.exploration_epsilon)
    except ValueError as exc:  # serving logs it and draws by argmax meanwhile
        return LoggedEstimates(policy.version, 0, 0, {}, None, f"no estimate: the curriculum's exploration settings "
                               f"are invalid ({exc}), so serving draws by argmax; correct them on the curriculum's "
                               "admin page")
    served = serving.policies.get(curriculum_id=curriculum.pk, policy_id=policy.pk) if policy.status == "active" \
        else serving.arm_policies.get(curriculum_id=policy.pk, policy_id=policy.pk)
    if served is None or served.id != policy.pk:  # the cache answers with the version it holds while a load fails
        return LoggedEstimates(policy.version, 0, 0, {}, None, f"v{policy.version} cannot be loaded for serving (the "
                               "web server's log says why, e.g. its artifact files): no estimate until it loads")
    ids = dict(Learner.objects.filter(external_id__in={r[2] for r in rows}).values_list("external_id", "id"))
    start, end = rows[0][4], until
    external = {v: k for k, v in ids.items()}
    reviews = {external[lid]: entry for lid, entry in _reviews(curriculum_id=curriculum.pk,
                                                               learner_ids=list(ids.values()), start=start, end=end).items()}
    keys = selectors.concept_keys(curriculum_id=curriculum.pk)
    positions = {k: i for i, k in enumerate(keys)}
    spec = served.spec.widened(num_concepts=len(keys))
    # the concepts the version scores (serving's rule: its own, or all the curriculum's when it scores unseen ones)
    allowed = tuple(range(len(served.concept_keys) if spec is served.spec else len(keys)))
    found = histories(learner_ids=list(ids.values()), curriculum_id=curriculum.pk)

    kept = []  # (learner, reward, logged propensity) per decision used; its state, time, concept and options beside
    states, nows, chosen, options, on_policy = [], [], [], [], defaultdict(float)
    skipped: dict[str, int] = defaultdict(int)
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
            if reward is None:
                continue
            choice = _options(allowed, offered=row[9], candidates=row[8])
            if isinstance(choice, str):
                skipped[choice] += 1
                continue
            kept.append((learner, reward, row[6]))
            states.append(_snapshot(state))
            nows.append(row[4].timestamp())
            chosen.append(positions.get(row[3], -1))  # -1: no longer a concept of the curriculum (pi_e 0)
            options.append(choice)
            if row[7] == policy.pk:
                on_policy[learner] += reward
    skipped = dict(skipped)
    if not kept:
        return LoggedEstimates(policy.version, 0, 0, {}, None, "no logged recommendation has a following review yet"
                               if not skipped else "no logged recommendation the version can be scored on",
                               skipped)
    target, q, v = _target(served, states, nows=nows, chosen=chosen, options=options, everything=allowed,
                           exploration=exploration)
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
                           Mean.of(on_policy.values()) if on_policy else None, "; ".join(refused), skipped)


def _options(allowed: tuple[int, ...], *, offered: str | None, candidates: int) -> tuple[int, ...] | str:
    """The positions the version would have chosen among for a logged decision: the ``offered`` concepts (the log's
    column; "": every concept) it scores (``allowed``), in position order, as serving masks them; or why the
    decision is left out (a key of SKIPPED). A row without ``offered`` (null, or not readable) is read as offering
    every concept when its ``candidates`` count is the version's, and left out otherwise."""
    positions = None
    if offered is not None:
        try:
            positions = offered_positions(offered)
        except ValueError:  # not serving's writing: as if not recorded
            offered = None
    if offered is None:
        return allowed if candidates == len(allowed) else "not_recorded"
    if positions is None:
        return allowed
    scored = tuple(sorted(p for p in set(positions) if 0 <= p < len(allowed)))
    return scored or "none_scored"


def _sampled_rows(rows, *, max_decisions: int, seed: int) -> list[tuple]:
    """The window's rows (time order) of a uniform seeded sample of its learners holding at most ``max_decisions``
    decisions: all of them when they fit; else the learners in ``assignment.sample``'s random order, while their
    decisions fit (a learner whose decisions alone exceed the cap: its newest ``max_decisions``)."""
    columns = ("id", "arm_id", "learner", "concept", "at", "served", "propensity", "policy_id", "candidates", "offered")
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


def _target(served, states, *, nows, chosen, options, everything, exploration):
    """(pi_e of the logged concept, q of it, v = E_pi_e q) per decision, float64 [N] each. ``chosen``: the logged
    concept's position per decision (-1: none of the curriculum's); ``options``: per decision the positions the
    version chooses among (``_options``), ``everything`` those it scores. Decisions with the same options go
    together, in DTLite batches masked to them as serving masks its candidates (the mask comes before the version's
    top_k, so restricting its distribution over every concept afterwards would not be the same). A logged concept
    outside its options has pi_e 0 and q 0 (its weight is 0, so doubly robust never reads that q)."""
    target, q, v = np.zeros(len(states)), np.zeros(len(states)), np.zeros(len(states))
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, option in enumerate(options):
        groups[option].append(i)
    for option, members in groups.items():
        index = {p: k for k, p in enumerate(option)}
        for start in range(0, len(members), serving._LEARNERS_PER_CALL):
            part = members[start:start + serving._LEARNERS_PER_CALL]
            greedy, probs = serving.policy_distribution(served, [states[i] for i in part], nows=[nows[i] for i in part],
                                                        allowed=list(option), all_concepts=option == everything)
            with np.errstate(divide="ignore"):
                preferences = np.log(np.asarray(probs, dtype=np.float64)[:, option])
            pi = exploration.distribution(preferences=preferences, greedy=np.array([index[int(g)] for g in greedy]))
            for b, i in enumerate(part):
                recall = states[i].encoder.recall(states[i].memory, np.array([nows[i]]))[0][list(option)]
                a = index.get(chosen[i])
                if a is not None:
                    target[i], q[i] = float(pi[b, a]), float(recall[a])
                v[i] = float(pi[b] @ recall)
    return target, q, v
