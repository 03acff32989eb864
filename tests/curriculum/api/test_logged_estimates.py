"""Logged off-policy estimates (curriculum/experiments/logged_estimates.py) on logs served through the API: the
version's probability is taken over the concepts the request offered, a concept it never takes counts with weight 0,
a version that cannot load or exploration settings serving refuses give the reason instead of an estimate, and the
experiment page shows these reasons (and no interval for one learner) rather than failing."""
import datetime as dt
import json

import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from curriculum.experiments import logged_estimates as module
from curriculum.experiments.exploration import seed_draws
from curriculum.experiments.logged_estimates import logged_estimates
from curriculum.experiments.services import create_experiment, start_experiment
from curriculum.models import Curriculum, RecommendationLog
from curriculum.services import promote_policy

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def post(client, url, body):
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 201), response.content
    return response.json()


@pytest.fixture
def draws_from():
    """Exploration's draws in this thread (the test client serves in it) from a given seed, then from the system."""
    yield seed_draws
    seed_draws(None)


def serve_and_answer(client, learners, *, candidates=None, correct=lambda concept: True, at=T0):
    """One recommendation per learner at ``at`` (among ``candidates``), answered a minute later with its id."""
    for learner in learners:
        body = {"curriculum": "demo", "learner": learner, "at": at.isoformat()}
        if candidates is not None:
            body["candidates"] = candidates
        rec = post(client, "/api/v1/recommendations", body)
        post(client, "/api/v1/reviews", {"curriculum": "demo", "learner": learner, "concept": rec["concept"],
                                         "correct": correct(rec["concept"]),
                                         "recommendation_id": rec["recommendation_id"],
                                         "reviewed_at": (at + dt.timedelta(minutes=1)).isoformat()})


@pytest.fixture
def spy(monkeypatch):
    """The per-decision columns logged_estimates hands to the estimators: {"reward", "propensity", "target"}."""
    seen = {}
    real = module.episodes_from_rows

    def record(learners, reward, propensity, target, *rest):
        seen.update(reward=np.asarray(reward), propensity=np.asarray(propensity), target=np.asarray(target))
        return real(learners, reward, propensity, target, *rest)

    monkeypatch.setattr(module, "episodes_from_rows", record)
    return seen


def test_a_version_on_its_own_log_is_scored_over_the_candidates_the_requests_offered(
        api_client, make_curriculum, make_real_policy, draws_from, spy):
    demo = make_curriculum("demo", concepts=5)
    policy = make_real_policy(demo, seed=1)
    promote_policy(policy=policy, reason="test")
    Curriculum.objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=1.0)
    draws_from(4)
    serve_and_answer(api_client, [f"u{i}" for i in range(40)], candidates=["c0", "c1"],
                     correct=lambda concept: concept == "c0")
    policy.refresh_from_db()

    result = logged_estimates(policy=policy)

    # its serving distribution over c0, c1 is the logged one: every ratio is 1, and IPS is the observed mean
    assert np.allclose(spy["target"], 0.5) and np.allclose(spy["propensity"], 0.5)
    assert result.estimates["ips"].value == pytest.approx(result.on_policy.mean)
    assert result.estimates["dr"].value == pytest.approx(result.on_policy.mean)
    assert result.decisions == 40 and result.skipped == {}
    assert set(RecommendationLog.objects.values_list("offered", "candidates")) == {("0,1", 2)}


def test_a_request_without_candidates_is_logged_as_offering_every_concept(api_client, make_curriculum):
    make_curriculum("demo", concepts=3)
    serve_and_answer(api_client, ["u1"])
    post(api_client, "/api/v1/recommendations/batch", {"curriculum": "demo", "learners": ["u2", "u3"]})
    serve_and_answer(api_client, ["u4"], candidates=["c2", "c0", "c2"])
    offered = dict(RecommendationLog.objects.values_list("learner", "offered"))
    assert offered == {"u1": "", "u2": "", "u3": "", "u4": "0,2"}


def test_a_concept_the_version_never_takes_counts_with_weight_0(api_client, make_curriculum, make_real_policy,
                                                                 draws_from, spy):
    demo = make_curriculum("demo", concepts=6)  # c0..c5
    version = make_real_policy(demo, seed=1)  # scores c0..c4; not promoted: the fallback serves, over all six
    Curriculum.objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=1.0)
    draws_from(7)
    serve_and_answer(api_client, [f"u{i}" for i in range(120)], correct=lambda concept: concept != "c5")
    on_c5 = RecommendationLog.objects.filter(concept="c5").count()
    assert 0 < on_c5 < 120
    version.refresh_from_db()

    result = logged_estimates(policy=version)

    # every decision counts; epsilon 1 over its five concepts: 0.2 / (1/6) on c0..c4 (reward 1), 0 on c5
    assert result.decisions == 120 and np.count_nonzero(spy["target"] == 0) == on_c5
    assert result.estimates["ips"].value == pytest.approx(1.2 * (120 - on_c5) / 120)


def test_rows_logged_without_the_offered_concepts_are_used_only_when_their_count_is_the_versions(
        api_client, make_curriculum, make_real_policy, draws_from):
    demo = make_curriculum("demo", concepts=5)
    policy = make_real_policy(demo, seed=1)
    promote_policy(policy=policy, reason="test")
    Curriculum.objects.filter(pk=demo.pk).update(exploration="epsilon_greedy", exploration_epsilon=1.0)
    draws_from(2)
    serve_and_answer(api_client, [f"a{i}" for i in range(6)], candidates=["c0", "c1"])
    serve_and_answer(api_client, [f"b{i}" for i in range(4)])
    RecommendationLog.objects.update(offered=None)  # as logged before migration 0014
    policy.refresh_from_db()

    result = logged_estimates(policy=policy)

    assert (result.decisions, result.skipped) == (4, {"not_recorded": 6})
    assert result.skipped_note.startswith("6 decisions left out: logged before the log recorded the offered concepts")


def test_a_decision_among_concepts_the_version_scores_none_of_is_left_out_and_counted(
        api_client, make_curriculum, make_real_policy):
    demo = make_curriculum("demo", concepts=6)
    version = make_real_policy(demo, seed=1)  # scores c0..c4
    serve_and_answer(api_client, ["u1", "u2"], candidates=["c5"])
    serve_and_answer(api_client, ["u3"], candidates=["c4", "c5"])
    version.refresh_from_db()

    result = logged_estimates(policy=version)

    assert (result.decisions, result.skipped) == (1, {"none_scored": 2})
    assert "2 decisions left out: the version scores none of the concepts the request offered" in result.skipped_note


def test_an_active_version_that_cannot_load_says_so_instead_of_using_the_previous_one(
        api_client, make_curriculum, make_real_policy, make_policy):
    demo = make_curriculum("demo", concepts=5)
    first = make_real_policy(demo, seed=1)
    promote_policy(policy=first, reason="test")
    serve_and_answer(api_client, [f"u{i}" for i in range(5)])  # loads it into this process's cache
    broken = make_policy(demo, recall=0.9)  # registered and promotable, its artifact files never load
    promote_policy(policy=broken, reason="test", force=True)
    broken.refresh_from_db()

    result = logged_estimates(policy=broken)

    assert result.estimates == {} and result.error.startswith(f"v{broken.version} cannot be loaded for serving")


def test_exploration_settings_serving_refuses_give_the_reason_not_an_error(api_client, make_curriculum,
                                                                          make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    policy = make_real_policy(demo, seed=1)
    promote_policy(policy=policy, reason="test")
    serve_and_answer(api_client, ["u1", "u2"])
    Curriculum.objects.filter(pk=demo.pk).update(exploration="softmax", exploration_temperature=0.0)
    policy.refresh_from_db()

    result = logged_estimates(policy=policy)

    assert result.estimates == {} and "exploration_temperature: expected a number > 0" in result.error


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="run_experiment"))
    client.force_login(user)
    return client


def test_the_experiment_page_shows_the_reasons_and_no_interval_for_one_learner(operator, api_client, make_curriculum,
                                                                               make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    experiment = start_experiment(experiment=create_experiment(curriculum=demo, name="x",
                                                               candidates=[make_real_policy(demo, seed=2)]))
    serve_and_answer(api_client, ["u1"], at=experiment.started_at + dt.timedelta(seconds=1))
    page = operator.get(reverse("curriculum:experiment", args=[experiment.pk]))
    assert page.status_code == 200
    assert "(no interval below 2 learners)" in page.content.decode()

    Curriculum.objects.filter(pk=demo.pk).update(exploration="softmax", exploration_temperature=0.0)
    page = operator.get(reverse("curriculum:experiment", args=[experiment.pk]))
    assert page.status_code == 200
    assert "the curriculum&#x27;s exploration settings are invalid" in page.content.decode()
