"""The orchestrator's experiment pages: permission run_experiment, create, start, results, stop, promote the winner."""
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from curriculum.models import Experiment, PromotionEvent
from curriculum.services import promote_policy


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["run_experiment", "promote_policymodel"]))
    return user


@pytest.fixture
def versions(make_curriculum, make_policy):
    demo = make_curriculum("demo", concepts=3)
    active = make_policy(demo, recall=0.5)
    promote_policy(policy=active, reason="test")
    return demo, active, make_policy(demo, recall=0.6)


def test_the_pages_need_the_run_experiment_permission(client, django_user_model, versions):
    demo, _, _ = versions
    staff = django_user_model.objects.create_user("staff", password="pw-for-tests-only", is_staff=True)
    client.force_login(staff)
    response = client.get(reverse("curriculum:experiments", args=[demo.pk]))
    assert response.status_code == 403 and b"run_experiment" in response.content


def test_an_operator_creates_starts_reads_and_promotes_the_winner(client, operator, versions):
    demo, active, candidate = versions
    client.force_login(operator)

    response = client.post(reverse("curriculum:experiments", args=[demo.pk]),
                           {"name": "v2 vs v1", "candidate": [str(candidate.version)], "mode": "split", "traffic": "50, 50"})
    experiment = Experiment.objects.get()
    assert response.status_code == 302 and response.url == reverse("curriculum:experiment", args=[experiment.pk])
    client.post(reverse("curriculum:experiment-action", args=[experiment.pk]), {"action": "start"})
    experiment.refresh_from_db()
    assert experiment.status == "running"

    page = client.get(reverse("curriculum:experiment", args=[experiment.pk])).content.decode()
    assert 'id="experiment-outcomes"' in page and "experiment-chart" in page and "Traffic served per arm" in page

    arm = experiment.arms.get(label="B")
    client.post(reverse("curriculum:experiment-action", args=[experiment.pk]),
                {"action": "promote", "arm": str(arm.pk), "reason": "B wins"})
    event = PromotionEvent.objects.get(experiment=experiment)
    assert event.to_version == candidate.version and Experiment.objects.get().status == "stopped"


def test_a_bad_form_says_which_field(client, operator, versions):
    demo, _, candidate = versions
    client.force_login(operator)
    response = client.post(reverse("curriculum:experiments", args=[demo.pk]),
                           {"name": "x", "candidate": [str(candidate.version)], "traffic": "70, 20"}, follow=True)
    assert "traffic: the percentages must sum to 100" in response.content.decode()
    assert not Experiment.objects.exists()


@pytest.mark.parametrize(("candidate", "message"), [
    ("abc", "candidate: expected version numbers, e.g. 3"),
    ("99999999999999999999999", "candidate: demo has no version 99999999999999999999999"),
    ("42", "candidate: demo has no version 42"),
])
def test_a_candidate_that_is_not_a_version_is_a_form_error_naming_it(client, operator, versions, candidate, message):
    demo, _, _ = versions
    client.force_login(operator)
    response = client.post(reverse("curriculum:experiments", args=[demo.pk]), {"name": "x", "candidate": [candidate]})
    assert response.status_code == 200 and message in response.content.decode()
    assert not Experiment.objects.exists()


@pytest.mark.parametrize("arm", ["abc", "99999999999999999999999", "", "0"])
def test_promoting_an_arm_that_is_not_the_experiments_is_a_message_naming_it(client, operator, versions, arm):
    demo, _, candidate = versions
    client.force_login(operator)
    client.post(reverse("curriculum:experiments", args=[demo.pk]), {"name": "x", "candidate": [str(candidate.version)]})
    experiment = Experiment.objects.get()
    response = client.post(reverse("curriculum:experiment-action", args=[experiment.pk]),
                           {"action": "promote", "arm": arm, "reason": "r"}, follow=True)
    assert response.status_code == 200
    assert f"arm: this experiment has no arm {arm!r}" in response.content.decode().replace("&#x27;", "'")
    assert not PromotionEvent.objects.filter(experiment=experiment).exists()


def test_state_changes_need_a_csrf_token(operator, versions):
    from django.test import Client

    demo, _, candidate = versions
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(reverse("curriculum:experiments", args=[demo.pk]), {"name": "x", "candidate": ["2"]})
    assert response.status_code == 403 and not Experiment.objects.exists()
