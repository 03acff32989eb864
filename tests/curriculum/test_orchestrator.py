"""The orchestrator page: who may see it, ranking and charts, promote / force / roll back through the service."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from curriculum.models import PolicyModel, PromotionEvent
from curriculum.services import promote_policy

pytestmark = pytest.mark.django_db

URL = "/admin/curriculum-ops/orchestrator/"


@pytest.fixture
def curriculum(make_curriculum):
    return make_curriculum("algebra", concepts=3)


@pytest.fixture
def promoter(django_user_model):
    user = django_user_model.objects.create_user(username="promoter", password="pw-promoter-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="promote_policymodel"))
    return user


@pytest.fixture
def promoter_client(client, promoter):
    client.force_login(promoter)
    return client


def with_baselines(policy: PolicyModel) -> PolicyModel:
    recall = policy.dt_mean_final_recall
    policy.metrics["results"].update({
        "random": {"mean": 0.30, "ci95": [0.28, 0.32]},
        "leitner": {"mean": 0.45, "ci95": [0.43, 0.47]},
        "oracle": {"mean": 0.80, "ci95": [0.78, 0.82]},
    })
    policy.metrics["results"]["dt"]["mean"] = recall
    PolicyModel.objects.filter(pk=policy.pk).update(metrics=policy.metrics)
    return policy


def test_the_url_is_the_documented_one():
    assert reverse("curriculum:orchestrator") == URL


def test_staff_without_the_promote_permission_get_403(client, django_user_model, curriculum):
    staff = django_user_model.objects.create_user(username="staff", password="pw-staff-1", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403


def test_anonymous_users_are_sent_to_the_login_page(client, curriculum):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_state_changes_need_the_permission_too(client, django_user_model, curriculum, make_policy):
    candidate = make_policy(curriculum, recall=0.5)
    staff = django_user_model.objects.create_user(username="staff", password="pw-staff-1", is_staff=True)
    client.force_login(staff)
    assert client.post(reverse("curriculum:orchestrator-promote", args=[candidate.pk])).status_code == 403
    assert client.post(reverse("curriculum:orchestrator-rollback", args=[curriculum.pk])).status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == "candidate"


def test_candidates_are_ranked_by_evaluation_with_a_chart_each(promoter_client, curriculum, make_policy):
    make_policy(curriculum, recall=0.40)
    best = with_baselines(make_policy(curriculum, recall=0.60))
    make_policy(curriculum, recall=None)
    make_policy(curriculum, recall=0.50)
    response = promoter_client.get(URL)
    panel = response.context["panels"][0]
    assert [c["policy"].version for c in panel["candidates"]] == [2, 4, 1, 3]
    html = response.content.decode()
    version = html[html.index(f'id="version-algebra-{best.version}"'):]
    assert "<svg" in version and 'class="bar-dt"' in version and 'class="bar-oracle"' in version
    assert version.count('class="whisker"') >= 3 * 4  # a whisker and two caps per bar


def test_promote_makes_the_candidate_active_and_records_who(promoter_client, promoter, curriculum, make_policy):
    candidate = make_policy(curriculum, recall=0.5)
    response = promoter_client.post(reverse("curriculum:orchestrator-promote", args=[candidate.pk]), {"reason": "first"}, follow=True)
    candidate.refresh_from_db()
    assert candidate.status == "active"
    event = PromotionEvent.objects.get()
    assert (event.actor, event.reason, event.to_version) == (promoter, "first", candidate.version)
    # the admin capitalises a message's first letter: the curriculum key (lower case) must not come first
    assert f"Promoted: {curriculum.key} v{candidate.version} is now the active version" in response.content.decode()
    assert response.context["panels"][0]["active"]["policy"] == candidate


def test_a_worse_candidate_is_refused_with_the_services_message(promoter_client, curriculum, make_policy):
    active = make_policy(curriculum, recall=0.6)
    promote_policy(policy=active, reason="test")
    worse = make_policy(curriculum, recall=0.4)
    response = promoter_client.post(reverse("curriculum:orchestrator-promote", args=[worse.pk]), {"reason": ""}, follow=True)
    html = response.content.decode()
    assert "Promotion refused" in html and "evaluates worse than the active v1" in html
    active.refresh_from_db()
    assert active.status == "active"


def test_forcing_needs_a_written_reason(promoter_client, curriculum, make_policy):
    promote_policy(policy=make_policy(curriculum, recall=0.6), reason="test")
    worse = make_policy(curriculum, recall=0.4)
    url = reverse("curriculum:orchestrator-promote", args=[worse.pk])
    refused = promoter_client.post(url, {"force": "on", "reason": "  "}, follow=True)
    assert "needs a written reason" in refused.content.decode()
    promoter_client.post(url, {"force": "on", "reason": "the old one serves stale concepts"})
    worse.refresh_from_db()
    assert worse.status == "active"
    assert PromotionEvent.objects.filter(to_version=worse.version, forced=True).exists()


def test_roll_back_returns_to_the_previous_version(promoter_client, curriculum, make_policy):
    first, second = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.6)
    promote_policy(policy=first, reason="test")
    promote_policy(policy=second, reason="test")
    response = promoter_client.post(reverse("curriculum:orchestrator-rollback", args=[curriculum.pk]), {"reason": "regression"}, follow=True)
    first.refresh_from_db()
    assert first.status == "active"
    html = response.content.decode()
    assert "rolled back from v2 to v1" in html and "regression" in html  # the history shows it


def test_roll_back_without_a_previous_version_is_not_offered_and_refused(promoter_client, curriculum, make_policy):
    promote_policy(policy=make_policy(curriculum, recall=0.5), reason="test")
    page = promoter_client.get(URL).content.decode()
    assert 'id="rollback-algebra"' not in page and "No rollback: v1 was the first version activated" in page
    response = promoter_client.post(reverse("curriculum:orchestrator-rollback", args=[curriculum.pk]),
                                    {"reason": "try"}, follow=True)
    assert "there is no version to roll back to" in response.content.decode()
    assert PolicyModel.objects.get(status="active").version == 1


def test_state_changes_are_posts_with_csrf(promoter, curriculum, make_policy):
    candidate = make_policy(curriculum, recall=0.5)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(promoter)
    url = reverse("curriculum:orchestrator-promote", args=[candidate.pk])
    assert strict.get(url).status_code == 200  # the confirmation page: it changes nothing
    assert strict.post(url, {"reason": "no token"}).status_code == 403
    candidate.refresh_from_db()
    assert candidate.status == "candidate"
    page = strict.get(URL).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page


def test_the_admin_index_links_the_orchestrator_for_promoters_only(client, promoter, django_user_model):
    client.force_login(promoter)
    assert URL in client.get("/admin/").content.decode()
    staff = django_user_model.objects.create_user(username="staff", password="pw-staff-1", is_staff=True)
    client.force_login(staff)
    assert URL not in client.get("/admin/").content.decode()


def test_the_confirmation_page_says_the_first_version_must_beat_the_fallback_and_refuses_it(
        promoter_client, curriculum, make_policy):
    v1 = make_policy(curriculum, recall=0.549, fallback=0.601)
    url = reverse("curriculum:orchestrator-promote", args=[v1.pk])
    page = promoter_client.get(url).content.decode()
    assert "Under the protocol it scores mean final recall" in page and "0.6010" in page
    assert "v1 does not beat the fallback it would replace" in page
    page = promoter_client.post(url, {"reason": "demo"}, follow=True).content.decode()
    assert "Promotion refused: v1 does not beat the fallback" in page
    assert not PolicyModel.objects.filter(status="active").exists()
    promoter_client.post(url, {"reason": "smoke test", "force": "on"})
    assert PromotionEvent.objects.get().forced and PolicyModel.objects.get(status="active") == v1


def test_the_orchestrator_shows_the_fallbacks_score_under_the_protocol_while_nothing_is_active(
        promoter_client, curriculum, make_policy):
    make_policy(curriculum, recall=0.5, fallback=None)
    page = promoter_client.get(URL).content.decode()
    assert "It has no evaluation under the protocol yet" in page
    make_policy(curriculum, recall=0.7, fallback=0.42)
    page = promoter_client.get(URL).content.decode()
    assert "Under the protocol it scores mean final recall <strong>0.4200</strong>" in page


# -------------------------------------------------------------------------- changing the protocol on purpose
@pytest.fixture
def protocol_editor(promoter):
    promoter.user_permissions.add(Permission.objects.get(codename="change_curriculum"))
    return promoter


def protocol_form(**changes):
    return {"students": "30", "seed": "1234", "interactions": "1830", "reason": "610 concepts: meet every one", **changes}


def test_changing_the_protocol_is_audited_and_versions_under_the_old_one_ask_for_re_evaluation(
        client, protocol_editor, curriculum, make_policy):
    from django.contrib.admin.models import LogEntry

    make_policy(curriculum, recall=0.5)
    client.force_login(protocol_editor)
    page = client.get(URL).content.decode()
    assert 'id="protocol-change-algebra"' in page and 'name="interactions" min="1" value="100"' in page
    url = reverse("curriculum:orchestrator-protocol", args=[curriculum.pk])
    page = client.post(url, protocol_form(), follow=True).content.decode()
    curriculum.refresh_from_db()
    assert (curriculum.protocol.students, curriculum.protocol.interactions) == (30, 1830)
    assert "evaluation protocol changed from 200 students" in page
    entry = LogEntry.objects.get(object_id=str(curriculum.pk))
    assert entry.user == protocol_editor and "to 30 students, seed 1234, 1830 reviews each" in entry.change_message
    assert "Reason: 610 concepts: meet every one" in entry.change_message
    assert "not evaluated under the current protocol" in page and 'id="evaluate-algebra-1"' in page


def test_the_protocol_change_needs_a_reason_and_valid_numbers(client, protocol_editor, curriculum):
    client.force_login(protocol_editor)
    url = reverse("curriculum:orchestrator-protocol", args=[curriculum.pk])
    page = client.post(url, protocol_form(reason=" "), follow=True).content.decode()
    assert "protocol not changed: reason: changing the evaluation protocol needs a written reason" in page
    page = client.post(url, protocol_form(students="1"), follow=True).content.decode()
    assert "protocol not changed: evaluation protocol: students must be an integer in [2, 100000]" in page
    curriculum.refresh_from_db()
    assert curriculum.evaluation_protocol == {}


def test_the_protocol_change_needs_the_change_permission_and_csrf(client, promoter, protocol_editor, curriculum):
    url = reverse("curriculum:orchestrator-protocol", args=[curriculum.pk])
    client.force_login(promoter)
    promoter.user_permissions.remove(Permission.objects.get(codename="change_curriculum"))
    from django.contrib.auth import get_user_model

    only_promoter = get_user_model().objects.create_user(username="p2", password="pw-p2-1", is_staff=True)
    only_promoter.user_permissions.add(Permission.objects.get(codename="promote_policymodel"))
    client.force_login(only_promoter)
    assert client.post(url, protocol_form()).status_code == 403
    assert 'id="protocol-change-algebra"' not in client.get(URL).content.decode()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.get(username="promoter"))
    assert strict.post(url, protocol_form()).status_code == 403  # no CSRF token
    assert client.get(url).status_code == 405  # a change is a POST
    curriculum.refresh_from_db()
    assert curriculum.evaluation_protocol == {}


def test_a_version_trained_on_too_few_learners_says_so_on_the_orchestrator(promoter_client, curriculum, make_policy):
    policy = make_policy(curriculum, recall=0.5)
    metrics = {**policy.metrics, "training_data": {"episodes": 1, "steps": 6220, "concepts": 3,
                                                   "warnings": ["too few learners to learn from: 1 episode(s)"]}}
    PolicyModel.objects.filter(pk=policy.pk).update(metrics=metrics)
    page = promoter_client.get(URL).content.decode()
    assert "Trained on: too few learners to learn from: 1 episode(s)." in page


def test_the_rollback_confirmation_says_which_promotion_it_undoes_after_a_later_promotion(
        promoter_client, promoter, curriculum, make_policy):
    import html

    first, second = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.6)
    promote_policy(policy=first, reason="start")
    promote_policy(policy=second, reason="better")
    promote_policy(policy=first, actor=promoter, reason="v2 misbehaves", force=True)  # v1 again, later
    page = html.unescape(promoter_client.get(
        reverse("curriculum:orchestrator-rollback", args=[curriculum.pk])).content.decode())
    heading = " ".join(page.split('id="confirm"')[1].split("</h2>")[0].split())
    assert "Roll back curriculum <code>algebra</code>: back from v1 to the previously active v2" in heading
    undoes = " ".join(page.split('id="rollback-undoes">')[1].split("</p>")[0].split())
    assert undoes.startswith("Rolling back undoes the promotion of v1 on ") and "by promoter" in undoes
    assert "(reason: \u201cv2 misbehaves\u201d): v2, the version active before it, becomes active again" in undoes
    assert "v2 is newer than v1: v1 was promoted again after it." in undoes


def test_a_version_over_another_deck_than_the_active_one_is_held_to_the_fallback_on_both_pages(
        promoter_client, make_curriculum, make_policy, store_fallback):
    curriculum = make_curriculum("bigger", concepts=5)
    v1 = make_policy(curriculum, recall=0.59, fallback=None)
    PolicyModel.objects.filter(pk=v1.pk).update(config={"concept_keys": ["c0", "c1", "c2"]})
    promote_policy(policy=v1, force=True, reason="three concepts")
    v2 = make_policy(curriculum, recall=0.30, random=0.05, fallback=None)
    PolicyModel.objects.filter(pk=v2.pk).update(config={"concept_keys": [f"c{i}" for i in range(5)]})
    store_fallback(curriculum, mean=0.21, num_concepts=5)
    page = promoter_client.get(URL).content.decode()
    assert "over 5 concepts, the active v1 over 3: not comparable" in page and "-0.2900" not in page
    page = promoter_client.get(reverse("curriculum:orchestrator-promote", args=[v2.pk])).content.decode()
    assert "v2 is evaluated over 5 concepts and the active v1 over 3" in page and "0.2100" in page
    assert "and it beats the fallback (lowest_recall, 0.2100) over its concepts" in page


def test_a_round_robin_fallback_is_named_and_scored_as_itself(promoter_client, curriculum, make_policy):
    from curriculum.evaluation_protocol import fallback_key
    from curriculum.state_specs import StateSpec

    make_policy(curriculum, recall=0.7, fallback=None)
    curriculum.refresh_from_db()
    protocol, n = curriculum.protocol, curriculum.concepts.count()
    type(curriculum).objects.filter(pk=curriculum.pk).update(fallback_rule="round_robin", fallback_evaluations={
        fallback_key(protocol, n, "round_robin"): {
            "metric": "mean_final_recall", "students": protocol.students, "seed": protocol.seed, "num_concepts": n,
            "encoder_identity": StateSpec.default(num_concepts=n).identity, "protocol": protocol.to_dict(),
            "results": {"round_robin": {"mean": 0.43, "ci95": [0.42, 0.44]}}}})
    page = promoter_client.get(URL).content.decode()
    assert "its fallback heuristic (round_robin: round robin)" in page
    assert "Under the protocol it scores mean final recall <strong>0.4300</strong>" in page


def test_a_protocol_that_meets_too_few_of_the_decks_concepts_is_flagged_and_the_sized_one_proposed(
        client, protocol_editor, make_curriculum, make_policy):
    # a newcomer's finding: after importing 610 concepts into a 20-concept curriculum the protocol stayed at 60
    # reviews a student, every policy scored near 0, and nothing on the page said so
    curriculum = make_curriculum("grown", concepts=40)
    type(curriculum).objects.filter(pk=curriculum.pk).update(
        evaluation_protocol={"students": 100, "seed": 1234, "interactions": 60, "horizon_s": 86400.0})
    make_policy(curriculum, recall=0.02)
    client.force_login(protocol_editor)
    page = client.get(URL).content.decode()
    assert 'id="protocol-too-small-grown"' in page
    assert "gives each simulated student 60 reviews for 40 concepts, fewer than 3 a concept" in page
    assert "Sized for this deck: 100 students &times; 120 reviews" in page
    assert 'name="interactions" min="1" value="120"' in page  # proposed in the form
    type(curriculum).objects.filter(pk=curriculum.pk).update(
        evaluation_protocol={"students": 100, "seed": 1234, "interactions": 120, "horizon_s": 86400.0})
    assert 'id="protocol-too-small-grown"' not in client.get(URL).content.decode()
