"""The promotion gate: versions compare only under the curriculum's evaluation protocol, below-random versions are
refused (the first promotion too), forcing needs a reason, and re-evaluation under the protocol unlocks the gate."""
from __future__ import annotations

import pytest

from curriculum import selectors, services
from curriculum.evaluation_protocol import EvaluationProtocol, ProtocolError, lift
from curriculum.models import PolicyModel

pytestmark = pytest.mark.django_db

OTHER = {"students": 200, "seed": 1234, "interactions": 30, "horizon_s": 86400.0}


def test_a_candidate_is_not_compared_with_an_active_version_evaluated_under_another_protocol(make_curriculum, make_policy):
    curriculum = make_curriculum()
    old = make_policy(curriculum, recall=0.60, protocol=OTHER, before_protocols=True)  # fewer reviews, other numbers
    services.promote_policy(policy=old, force=True, reason="before protocols")
    new = make_policy(curriculum, recall=0.28)
    with pytest.raises(services.PromotionRefused, match="active v1 has no evaluation under the curriculum's protocol"):
        services.promote_policy(policy=new, reason="better?")
    verdict = services.promotion_gate(candidate=new, active=old)
    assert not verdict.passes and verdict.needs_reevaluation == (old,)
    assert "0.2800 < 0.6000" not in " ".join(verdict.refusals)  # the unlike numbers are never compared


def test_a_candidate_evaluated_under_another_protocol_is_refused(make_curriculum, make_policy):
    curriculum = make_curriculum()
    candidate = make_policy(curriculum, recall=0.9, protocol=OTHER, before_protocols=True)
    with pytest.raises(services.PromotionRefused, match="v1 has no evaluation under the curriculum's protocol.*30 reviews"):
        services.promote_policy(policy=candidate, reason="looks great")


def test_the_active_version_re_evaluated_under_the_protocol_is_compared_like_with_like(
    make_curriculum, make_policy, evaluation_metrics
):
    curriculum = make_curriculum()
    old = make_policy(curriculum, recall=0.60, protocol=OTHER, before_protocols=True)
    services.promote_policy(policy=old, force=True, reason="before protocols")
    # what evaluate_under_protocol stores: the active version under the curriculum's protocol
    protocol = curriculum.protocol
    PolicyModel.objects.filter(pk=old.pk).update(
        evaluations={protocol.key: evaluation_metrics(recall=0.26, random=0.2, protocol=protocol.to_dict())})
    old.refresh_from_db()
    assert selectors.evaluation_under(policy=old, protocol=protocol)["results"]["dt"]["mean"] == 0.26
    new = make_policy(curriculum, recall=0.28, random=0.2)
    event = services.promote_policy(policy=new, reason="better under the same protocol")
    assert (event.from_version, event.to_version, event.forced) == (1, 2, False)


def test_a_worse_candidate_under_the_same_protocol_is_refused(make_curriculum, make_policy):
    curriculum = make_curriculum()
    services.promote_policy(policy=make_policy(curriculum, recall=0.5), reason="first")
    with pytest.raises(services.PromotionRefused, match=r"worse than the active v1 under the same protocol \(mean final recall 0.4000 < 0.5000\)"):
        services.promote_policy(policy=make_policy(curriculum, recall=0.4), reason="second")


def test_the_first_promotion_of_a_below_random_version_is_refused(make_curriculum, make_policy):
    curriculum = make_curriculum()
    weak = make_policy(curriculum, recall=0.134, random=0.608)  # the one-learner log of the issue
    with pytest.raises(services.PromotionRefused, match=r"below the random baseline .*0.1340 < random 0.6080"):
        services.promote_policy(policy=weak, reason="train_crl_policy --promote")
    assert not PolicyModel.objects.filter(status="active").exists()


def test_a_below_random_version_forced_with_a_reason_is_promoted(make_curriculum, make_policy):
    curriculum = make_curriculum()
    weak = make_policy(curriculum, recall=0.134, random=0.608)
    with pytest.raises(services.PromotionRefused, match="reason"):
        services.promote_policy(policy=weak, force=True, reason="  ")
    event = services.promote_policy(policy=weak, force=True, reason="smoke test of serving")
    assert event.forced and event.reason == "smoke test of serving"
    assert PolicyModel.objects.get(status="active") == weak


def test_every_promotion_and_rollback_needs_a_reason(make_curriculum, make_policy):
    curriculum = make_curriculum()
    v1, v2 = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.6)
    with pytest.raises(services.PromotionRefused, match="reason: every promotion needs a written reason"):
        services.promote_policy(policy=v1)
    services.promote_policy(policy=v1, reason="first")
    services.promote_policy(policy=v2, reason="better")
    with pytest.raises(services.PromotionRefused, match="reason: every rollback needs a written reason"):
        services.rollback_policy(curriculum=curriculum)
    assert selectors.rollback_target(curriculum=curriculum) == v1
    services.rollback_policy(curriculum=curriculum, reason="complaints")
    assert PolicyModel.objects.get(status="active") == v1


def test_a_retired_version_can_be_promoted_again_through_the_gate(make_curriculum, make_policy):
    curriculum = make_curriculum()
    v1, v2 = make_policy(curriculum, recall=0.6), make_policy(curriculum, recall=0.5)
    services.promote_policy(policy=v1, reason="first")
    services.promote_policy(policy=v2, force=True, reason="try the new encoder")
    v1.refresh_from_db()
    assert v1.status == "retired"
    services.promote_policy(policy=v1, reason="back to the better one")  # 0.6 >= 0.5 under the same protocol
    assert PolicyModel.objects.get(status="active") == v1


def test_the_curriculum_protocol_decides_which_evaluation_counts(make_curriculum, make_policy):
    curriculum = make_curriculum()
    curriculum.evaluation_protocol = {"interactions": 30}
    curriculum.save()
    assert curriculum.protocol == EvaluationProtocol.from_dict(OTHER)
    candidate = make_policy(curriculum, recall=0.5, protocol=OTHER)
    services.promote_policy(policy=candidate, reason="under the curriculum's protocol")


def test_protocol_fields_are_validated_by_name():
    with pytest.raises(ProtocolError, match="students must be an integer"):
        EvaluationProtocol.from_dict({"students": 1})
    with pytest.raises(ProtocolError, match="unknown field.*reviews"):
        EvaluationProtocol.from_dict({"reviews": 3})
    with pytest.raises(ProtocolError, match="horizon_s is fixed"):
        EvaluationProtocol.from_dict({"horizon_s": 3600})


def test_lift_is_the_difference_with_a_combined_interval():
    metrics = {"results": {"dt": {"mean": 0.6, "ci95": [0.57, 0.63]}, "random": {"mean": 0.4, "ci95": [0.36, 0.44]},
                           "oracle": {"mean": 0.9, "ci95": [0.9, 0.9]}}}
    out = lift(metrics)
    assert set(out) == {"random"}  # the oracle is a ceiling, not a baseline
    assert out["random"]["mean"] == pytest.approx(0.2)
    assert out["random"]["ci95"] == pytest.approx([0.15, 0.25])  # half-width hypot(0.03, 0.04) = 0.05


def test_uncovered_concepts_are_those_outside_the_active_version(make_curriculum, make_policy, store_fallback):
    curriculum = make_curriculum(concepts=3)
    policy = make_policy(curriculum, recall=0.5)
    PolicyModel.objects.filter(pk=policy.pk).update(config={"concept_keys": ["c0", "c1"]})
    store_fallback(curriculum, mean=0.2, num_concepts=2)  # the gate compares over the version's two concepts
    assert selectors.uncovered_concepts(curriculum=curriculum) == []  # no active version: the fallback scores all
    services.promote_policy(policy=policy, reason="first")
    assert selectors.uncovered_concepts(curriculum=curriculum) == ["c2"]


def test_the_first_registered_version_stores_its_protocol_and_later_ones_do_not(make_curriculum, make_policy):
    curriculum = make_curriculum()
    assert not curriculum.evaluation_protocol
    make_policy(curriculum, protocol=OTHER)
    curriculum.refresh_from_db()
    assert curriculum.protocol == EvaluationProtocol.from_dict(OTHER)
    make_policy(curriculum, protocol={**OTHER, "students": 50})
    curriculum.refresh_from_db()
    assert curriculum.protocol == EvaluationProtocol.from_dict(OTHER)
    assert services.evaluation_protocol_for(curriculum=curriculum, proposed=EvaluationProtocol()) == curriculum.protocol


def test_before_any_version_a_run_is_evaluated_under_its_own_settings_and_nothing_is_stored(make_curriculum):
    curriculum = make_curriculum()
    proposed = EvaluationProtocol.from_dict({"students": 9, "interactions": 12})
    assert services.evaluation_protocol_for(curriculum=curriculum, proposed=proposed) == proposed
    curriculum.refresh_from_db()
    assert not curriculum.evaluation_protocol


# ------------------------------------------------------------------- the fallback: what serves without a version
def test_a_first_version_below_the_fallback_is_refused_with_both_numbers(make_curriculum, make_policy):
    curriculum = make_curriculum()
    v1 = make_policy(curriculum, recall=0.549, random=0.3, fallback=0.601)  # make run's demo in the issue
    with pytest.raises(services.PromotionRefused,
                       match=r"v1 does not beat the fallback it would replace: lowest_recall.*scores 0.6010 under "
                             r"the same protocol \(v1: mean final recall 0.5490\)"):
        services.promote_policy(policy=v1, reason="make run: demo policy")
    assert not PolicyModel.objects.filter(status="active").exists()
    verdict = services.promotion_gate(candidate=v1, active=None)
    assert verdict.fallback_recall == pytest.approx(0.601) and not verdict.fallback_needs_evaluation


def test_a_first_version_that_only_ties_the_fallback_is_refused(make_curriculum, make_policy):
    v1 = make_policy(make_curriculum(), recall=0.6, fallback=0.6)
    with pytest.raises(services.PromotionRefused, match="does not beat the fallback"):
        services.promote_policy(policy=v1, reason="tie")


def test_a_first_version_above_the_fallback_passes(make_curriculum, make_policy):
    v1 = make_policy(make_curriculum(), recall=0.62, fallback=0.601)
    event = services.promote_policy(policy=v1, reason="beats lowest_recall")
    assert (event.from_version, event.to_version, event.forced) == (None, 1, False)


def test_a_first_version_is_refused_while_the_fallback_has_no_evaluation_under_the_protocol(make_curriculum, make_policy):
    v1 = make_policy(make_curriculum(), recall=0.9, fallback=None)
    verdict = services.promotion_gate(candidate=v1, active=None)
    assert verdict.fallback_needs_evaluation and verdict.needs_reevaluation == (v1,)
    with pytest.raises(services.PromotionRefused, match="the fallback .* has no evaluation under the curriculum's protocol"):
        services.promote_policy(policy=v1, reason="no bar yet")


def test_a_fallback_evaluated_under_another_protocol_or_concept_count_is_not_the_bar(make_curriculum, make_policy, store_fallback):
    curriculum = make_curriculum(concepts=5)
    v1 = make_policy(curriculum, recall=0.5, fallback=None)
    store_fallback(curriculum, mean=0.1, num_concepts=4)
    assert services.promotion_gate(candidate=v1, active=None).fallback_needs_evaluation
    key = next(iter(curriculum.fallback_evaluations))
    stale = {**curriculum.fallback_evaluations[key], "encoder_identity": "0" * 64}  # another default encoder
    type(curriculum).objects.filter(pk=curriculum.pk).update(fallback_evaluations={key.replace("concepts=4", "concepts=5"): stale})
    v1.curriculum.refresh_from_db()
    assert services.promotion_gate(candidate=v1, active=None).fallback_needs_evaluation


def test_a_version_below_the_fallback_forced_with_a_reason_is_promoted_and_audited(make_curriculum, make_policy, admin_user):
    v1 = make_policy(make_curriculum(), recall=0.549, fallback=0.601)
    with pytest.raises(services.PromotionRefused, match="reason"):
        services.promote_policy(policy=v1, force=True, reason="")
    event = services.promote_policy(policy=v1, force=True, reason="serving smoke test", actor=admin_user)
    assert (event.forced, event.reason, event.actor_name, event.to_version) == (True, "serving smoke test", admin_user.username, 1)
    assert PolicyModel.objects.get(status="active") == v1


# ------------------------------------------------------------------------------ a protocol sized from the deck
def test_a_protocol_for_a_610_concept_deck_meets_every_concept():
    from curriculum.evaluation_protocol import REVIEWS_PER_CONCEPT, SIZED_INTERACTIONS_CAP

    first_run = EvaluationProtocol(students=30, interactions=50)  # the first run
    sized = first_run.sized_for(num_concepts=610)
    assert sized.interactions == REVIEWS_PER_CONCEPT * 610 == 1830 and sized.students == 30
    assert EvaluationProtocol().sized_for(num_concepts=20) == EvaluationProtocol()  # a small deck keeps its 100
    huge = EvaluationProtocol().sized_for(num_concepts=6000)
    assert huge.interactions == 6000 > SIZED_INTERACTIONS_CAP  # capped, but every concept is still met once
    assert EvaluationProtocol().sized_for(num_concepts=2000).interactions == SIZED_INTERACTIONS_CAP


def test_a_sized_protocol_keeps_students_times_reviews_within_the_budget():
    from curriculum.evaluation_protocol import SIZED_MIN_STUDENTS, SIZED_STUDENT_REVIEWS_CAP

    default = EvaluationProtocol()  # 200 students x 100 reviews
    sized = default.sized_for(num_concepts=610)
    assert (sized.students, sized.interactions) == (SIZED_STUDENT_REVIEWS_CAP // 1830, 1830) == (54, 1830)
    assert (sized.seed, sized.horizon_s) == (default.seed, default.horizon_s)
    # never below SIZED_MIN_STUDENTS (a 6,000-concept deck: 100,000 // 6,000 = 16 -> 30)
    assert default.sized_for(num_concepts=6000).students == SIZED_MIN_STUDENTS
    # never more than asked, and an operator's larger product is kept as the budget
    assert EvaluationProtocol(students=10, interactions=100).sized_for(num_concepts=610).students == 10
    big = EvaluationProtocol(students=2000, interactions=100).sized_for(num_concepts=610)
    assert (big.students, big.interactions) == (200_000 // 1830, 1830)
    # nothing to size: the same protocol, whatever its students
    assert EvaluationProtocol(students=5000, interactions=2000).sized_for(num_concepts=610).students == 5000


def test_with_a_round_robin_fallback_the_bar_is_round_robins_evaluation(make_curriculum, make_policy, store_fallback):
    from curriculum.evaluation_protocol import fallback_key

    curriculum = make_curriculum()
    v1 = make_policy(curriculum, recall=0.65, random=0.3, fallback=0.70)  # lowest_recall's bar: refused
    assert not services.promotion_gate(candidate=v1, active=None).passes
    type(curriculum).objects.filter(pk=curriculum.pk).update(fallback_rule="round_robin")
    v1.refresh_from_db()
    verdict = services.promotion_gate(candidate=v1, active=None)
    assert verdict.fallback_needs_evaluation and "the fallback (round_robin" in verdict.refusals[0]
    curriculum.refresh_from_db()
    protocol, n = curriculum.protocol, curriculum.concepts.count()
    rr = {**curriculum.fallback_evaluations[fallback_key(protocol, n)], "results": {"round_robin": {
        "mean": 0.60, "ci95": [0.59, 0.61]}}}
    curriculum.fallback_evaluations = {**curriculum.fallback_evaluations, fallback_key(protocol, n, "round_robin"): rr}
    curriculum.save(update_fields=["fallback_evaluations"])
    v1.refresh_from_db()
    verdict = services.promotion_gate(candidate=v1, active=None)
    assert verdict.passes and verdict.fallback_recall == pytest.approx(0.60)


# ------------------------------------------------- versions over different decks: the fallback over the candidate's
def _cover(policy, count: int) -> None:
    PolicyModel.objects.filter(pk=policy.pk).update(config={"concept_keys": [f"c{i}" for i in range(count)]})
    policy.refresh_from_db()


def test_versions_over_different_numbers_of_concepts_are_not_compared_the_candidate_meets_the_fallback(
        make_curriculum, make_policy, store_fallback):
    # the newcomer's case: concepts imported after v1 (3 -> 5 here); v2 over all 5 scores less than v1 over its 3
    curriculum = make_curriculum(concepts=5)
    v1 = make_policy(curriculum, recall=0.59, fallback=None)
    _cover(v1, 3)
    services.promote_policy(policy=v1, force=True, reason="before the new concepts")
    v2 = make_policy(curriculum, recall=0.08, random=0.05, fallback=None)
    _cover(v2, 5)
    verdict = services.promotion_gate(candidate=v2, active=v1)
    assert verdict.unlike_decks == (5, 3) and verdict.active_metrics is None
    assert verdict.fallback_needs_evaluation and verdict.needs_reevaluation == (v2,)
    assert "0.0800 < 0.5900" not in " ".join(verdict.refusals)  # the unlike means are never compared
    assert "has no evaluation under the curriculum's protocol over 5 concepts yet" in verdict.refusals[0]
    store_fallback(curriculum, mean=0.10, num_concepts=5)
    v2.curriculum.refresh_from_db()
    with pytest.raises(services.PromotionRefused,
                       match=r"v2 does not beat the fallback: lowest_recall, held to it over v2's 5 concepts because "
                             r"the active v1 is evaluated over 3, whose mean is not comparable, scores 0.1000 .*"
                             r"\(v2: mean final recall 0.0800\)"):
        services.promote_policy(policy=v2, reason="covers the new concepts")
    store_fallback(curriculum, mean=0.07, num_concepts=5)
    v2.curriculum.refresh_from_db()
    verdict = services.promotion_gate(candidate=v2, active=v1)
    assert verdict.passes and verdict.fallback_recall == pytest.approx(0.07)
    event = services.promote_policy(policy=v2, reason="covers the new concepts")
    assert (event.from_version, event.to_version, event.forced) == (1, 2, False)


def test_versions_over_the_same_deck_still_compare_with_each_other(make_curriculum, make_policy):
    curriculum = make_curriculum(concepts=5)
    v1 = make_policy(curriculum, recall=0.5)
    _cover(v1, 5)
    services.promote_policy(policy=v1, reason="first")
    v2 = make_policy(curriculum, recall=0.4, fallback=0.1)  # above the fallback, below v1: refused
    _cover(v2, 5)
    verdict = services.promotion_gate(candidate=v2, active=v1)
    assert verdict.unlike_decks is None and verdict.fallback_metrics is None
    assert "evaluates worse than the active v1 under the same protocol (mean final recall 0.4000 < 0.5000)" in \
        verdict.refusals[0]


def test_lift_is_the_paired_difference_when_the_evaluation_has_the_builtin_family_block():
    metrics = {"results": {"dt": {"mean": 0.6, "ci95": [0.57, 0.63]}, "random": {"mean": 0.4, "ci95": [0.36, 0.44]},
                           "leitner": {"mean": 0.5, "ci95": [0.47, 0.53]}},
               "families": {"builtin": {"paired": {"random": {"mean": 0.2, "ci95": [0.19, 0.21]}}}}}
    out = lift(metrics)
    assert out["random"] == {"mean": 0.2, "ci95": [0.19, 0.21], "paired": True}  # the same students: narrower
    assert out["leitner"]["paired"] is False and out["leitner"]["ci95"] == pytest.approx([0.0576, 0.1424], abs=1e-4)


def test_a_candidate_over_fewer_concepts_than_the_active_version_is_refused_unless_forced(make_curriculum, make_policy):
    # a reviewer's bypass: a retired version over 3 concepts, far below the active one over 5, passed as soon as it
    # beat the fallback over its 3
    curriculum = make_curriculum(concepts=5)
    smaller = make_policy(curriculum, recall=0.30, random=0.05, fallback=0.20)
    _cover(smaller, 3)
    wider = make_policy(curriculum, recall=0.70, fallback=0.20)
    _cover(wider, 5)
    services.promote_policy(policy=wider, force=True, reason="the whole deck")
    verdict = services.promotion_gate(candidate=smaller, active=wider)
    assert verdict.unlike_decks == (3, 5) and verdict.fallback_metrics is None and not verdict.needs_reevaluation
    assert verdict.refusals == (
        "v1 is evaluated over 3 concepts, fewer than the active v2's 5: their means are over different decks and are "
        "not compared; promoting it would leave 2 concepts the active version scores unscored: force it with a "
        "reason if that is intended",)
    with pytest.raises(services.PromotionRefused, match="fewer than the active v2's 5"):
        services.promote_policy(policy=smaller, reason="back to the old deck")
    event = services.promote_policy(policy=smaller, force=True, reason="the new concepts are withdrawn")
    assert event.forced and (event.from_version, event.to_version) == (2, 1)


def test_the_orchestrator_counts_the_concepts_once_for_versions_without_a_dtlite_config(
        admin_client, make_curriculum, make_policy):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    curriculum = make_curriculum(concepts=5)
    services.promote_policy(policy=make_policy(curriculum, recall=0.5), reason="first")  # configs without counts

    def counts() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get("/admin/curriculum-ops/orchestrator/").status_code == 200
        return sum('COUNT(*)' in q["sql"] and "curriculum_concept" in q["sql"] for q in queries.captured_queries)

    few = counts()
    for _ in range(6):
        make_policy(curriculum, recall=0.4)
    assert counts() == few  # not one or more per version


def test_a_version_that_scores_unseen_concepts_is_not_said_to_leave_them_unscored(make_curriculum, make_policy):
    # a newcomer's finding: v1 (summary token, trained on 20 concepts) serves all 630 after an import, yet the gate
    # said promoting it "would leave 610 concepts unscored"
    from training.rl.model_config import scores_unseen_concepts

    curriculum = make_curriculum(concepts=5)
    smaller = make_policy(curriculum, recall=0.30, random=0.05)
    config = {"concept_keys": ["c0", "c1", "c2"], "state_token": "summary", "concept_features": 4}
    assert scores_unseen_concepts(config)
    PolicyModel.objects.filter(pk=smaller.pk).update(config=config)
    smaller.refresh_from_db()
    wider = make_policy(curriculum, recall=0.70)
    _cover(wider, 5)
    services.promote_policy(policy=wider, force=True, reason="the whole deck")
    (refusal,) = services.promotion_gate(candidate=smaller, active=wider).refusals
    assert "unscored" not in refusal
    assert refusal.endswith("not compared; v1 scores the other 2 from their features when it serves, but its "
                            "evaluation does not cover them: force it with a reason to promote it anyway")
