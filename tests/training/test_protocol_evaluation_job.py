"""'Evaluate under the protocol' as a job: launched once per version and protocol from the orchestrator (a safe
``next`` only), its progress on the orchestrator and the worker panel, the evaluation stored on the version, a version
that cannot be evaluated failing with the reason; and a real Celery worker running one end to end."""
from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from curriculum.evaluation_protocol import EvaluationProtocol
from curriculum.models import PolicyModel
from curriculum.services import set_evaluation_protocol
from training import jobs
from training.jobs.stages import job_stages
from training.models import Job, ProtocolEvaluationJob
from training.workers import worker_health

ORCHESTRATOR = "/admin/curriculum-ops/orchestrator/"
TASK = "training.tasks.run_protocol_evaluation"
TINY = ["--num_users", "24", "--interactions", "24", "--epochs", "1", "--batch_size", "16", "--eval_students", "6",
        "--no_cuda", "--no-progress", "--policy-gradient-rounds", "0"]
SMALL_PROTOCOL = EvaluationProtocol(students=4, seed=99, interactions=12)


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user(username="operator", password="pw-operator-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[
        "promote_policymodel", "add_protocolevaluationjob", "view_protocolevaluationjob"]))
    return user


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def evaluate_url(policy: PolicyModel) -> str:
    return reverse("curriculum:orchestrator-evaluate", args=[policy.pk])


def trained_version(key: str) -> PolicyModel:
    """A tiny version trained and registered by train_crl_policy (real artifacts), then a protocol change leaves
    it not evaluated under its curriculum's protocol."""
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        call_command("train_crl_policy", "--output_dir", out, "--curriculum", key, "--concepts", "4", "--register",
                     *TINY, stdout=io.StringIO(), stderr=io.StringIO())
    policy = PolicyModel.objects.select_related("curriculum").get(curriculum__key=key, version=1)
    set_evaluation_protocol(curriculum=policy.curriculum, protocol=SMALL_PROTOCOL, actor=None, reason="faster")
    policy.curriculum.refresh_from_db()
    return policy


@pytest.mark.django_db
def test_the_button_launches_one_job_per_version_and_protocol(operator_client, curriculum, make_policy, sent,
                                                               django_capture_on_commit_callbacks):
    policy = make_policy(curriculum, recall=0.5)
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(evaluate_url(policy))
    job = ProtocolEvaluationJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{ORCHESTRATOR}#version-algebra-1"
    assert (job.status, job.policy, job.curriculum, job.created_by.username) == ("queued", policy, curriculum, "operator")
    assert job.protocol == curriculum.protocol.to_dict() and sent == [(TASK, job.pk)]
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(evaluate_url(policy))  # a second click while it waits: the same job
    assert ProtocolEvaluationJob.objects.count() == 1 and len(sent) == 1
    page = operator_client.get(ORCHESTRATOR).content.decode()
    assert 'id="evaluation-algebra-1"' in page and "queued: waiting for a worker" in page
    assert reverse("admin:training_protocolevaluationjob_status", args=[job.pk]) in page


@pytest.mark.django_db
@pytest.mark.parametrize(("next_url", "expected"), [
    ("/admin/curriculum-ops/orchestrator/policies/1/promote", "/admin/curriculum-ops/orchestrator/policies/1/promote"),
    ("https://evil.example/phish", f"{ORCHESTRATOR}#version-algebra-1"),
    ("//evil.example/phish", f"{ORCHESTRATOR}#version-algebra-1"),
])
def test_next_is_followed_only_within_the_site(operator_client, curriculum, make_policy, sent, next_url, expected):
    policy = make_policy(curriculum, recall=0.5)
    response = operator_client.post(evaluate_url(policy), {"next": next_url})
    assert response.status_code == 302 and response["Location"] == expected


@pytest.mark.django_db
def test_launching_needs_the_jobs_add_permission(client, django_user_model, curriculum, make_policy, sent):
    user = django_user_model.objects.create_user(username="promoter", password="pw-promoter-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="promote_policymodel"))
    client.force_login(user)
    assert client.post(evaluate_url(make_policy(curriculum, recall=0.5))).status_code == 403
    assert client.get(evaluate_url(make_policy(curriculum, recall=0.5))).status_code == 405
    assert not ProtocolEvaluationJob.objects.exists()


@pytest.mark.django_db
def test_a_version_whose_artifacts_cannot_be_loaded_fails_with_the_reason(curriculum, make_policy, sent):
    policy = make_policy(curriculum, recall=0.5)  # stand-in artifact files: the right hashes, not a policy
    set_evaluation_protocol(curriculum=curriculum, protocol=SMALL_PROTOCOL, actor=None, reason="faster")
    policy.curriculum.refresh_from_db()
    job, launched = jobs.launch_protocol_evaluation(policy=policy)
    jobs.run_protocol_evaluation(job_id=job.pk, worker="w1@test")
    job.refresh_from_db()
    assert launched and job.status == "failed" and "cannot evaluate" in job.error and "Traceback" not in job.error
    policy.refresh_from_db()
    assert policy.evaluations == {}


@pytest.mark.django_db
def test_the_worker_panel_lists_the_job_and_its_queue(curriculum, make_policy, monkeypatch):
    policy = make_policy(curriculum, recall=0.5)
    assert ProtocolEvaluationJob in jobs.JOB_MODELS and jobs.job_queues()[ProtocolEvaluationJob] == "default"
    job = ProtocolEvaluationJob.objects.create(curriculum=curriculum, policy=policy, status="running", worker="w1@host",
                                               protocol=curriculum.protocol.to_dict(), started_at=timezone.now())
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    from celery import Celery

    health = worker_health(timeout=0.2, app=Celery("dead", broker="redis://127.0.0.1:1/0"))
    assert [r.job for r in health.running] == [job]


@pytest.mark.django_db
@pytest.mark.trains
def test_the_job_evaluates_the_version_under_the_protocol_with_progress(make_curriculum, sent):
    make_curriculum("geo", concepts=4)
    policy = trained_version("geo")
    job, _ = jobs.launch_protocol_evaluation(policy=policy)
    phases = []
    original = jobs.JobRun.report

    def recording(self, **fields):
        if "phase" in fields:
            phases.append((fields["phase"], fields.get("step"), fields.get("steps")))
        original(self, **fields)

    jobs.JobRun.report = recording
    try:
        jobs.run_protocol_evaluation(job_id=job.pk, worker="w1@test")
    finally:
        jobs.JobRun.report = original
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.step == job.steps and job.progress_percent == 100.0
    loops = [(step, steps) for phase, step, steps in phases if phase == "evaluating"]
    assert loops[-1][0] == loops[-1][1] > 1  # one step per policy's closed loop, the last one done
    assert phases[-1][0] == "evaluating the fallback"  # nothing active: the bar a first version must beat
    assert {phase for phase, _, _ in phases} <= set(job_stages(job))  # every phase a stage of the bar
    policy.refresh_from_db()
    stored = policy.evaluations[SMALL_PROTOCOL.key]
    assert stored["students"] == 4 and stored["protocol"] == SMALL_PROTOCOL.to_dict()
    assert job.result["dt"] == pytest.approx(stored["results"]["dt"]["mean"])


@pytest.mark.integration
@pytest.mark.trains
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_evaluation_launched_from_the_orchestrator(celery_worker, make_curriculum, client,
                                                                          operator, wait_until):
    make_curriculum("geo", concepts=4)
    policy = trained_version("geo")
    client.force_login(operator)
    assert client.post(evaluate_url(policy)).status_code == 302
    job = ProtocolEvaluationJob.objects.get()

    def finished():
        job.refresh_from_db()
        return job.is_finished

    wait_until(finished, timeout=150, what=f"{job} to finish on the worker")
    log = celery_worker.log_path.read_text(errors="replace")[-4000:]
    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n--- worker log ---\n{log}"
    status = client.get(reverse("admin:training_protocolevaluationjob_status", args=[job.pk])).json()
    assert (status["status"], status["percent"], status["policy_version"]) == ("succeeded", 100.0, 1)
    policy.refresh_from_db()
    assert SMALL_PROTOCOL.key in policy.evaluations
    page = client.get(ORCHESTRATOR).content.decode()
    version = page[page.index('id="version-geo-1"'):]
    version = version[:version.index('class="inline-form"')]
    assert 'id="evaluation-geo-1"' not in version and "not evaluated under the current protocol" not in version


@pytest.mark.django_db
def test_a_failed_evaluation_is_retried_with_its_version_and_protocol(curriculum, make_policy, sent, operator):
    policy = make_policy(curriculum, recall=0.5)
    failed = ProtocolEvaluationJob.objects.create(curriculum=curriculum, policy=policy, status="failed",
                                                  protocol=SMALL_PROTOCOL.to_dict(), error="worker lost")
    retried = jobs.retry_job(job=failed, created_by=operator)
    assert (retried.status, retried.policy, retried.protocol) == ("queued", policy, SMALL_PROTOCOL.to_dict())
    with pytest.raises(ValidationError, match="interactions"):
        jobs.retry_job(job=failed, changes={"protocol": {"interactions": 0}})


@pytest.mark.django_db
def test_add_chooses_the_version_and_launches_its_evaluation(operator_client, curriculum, make_policy, sent,
                                                            django_capture_on_commit_callbacks):
    add = reverse("admin:training_protocolevaluationjob_add")
    policy = make_policy(curriculum, recall=0.5)
    page = operator_client.get(add)
    assert page.status_code == 200  # a form, not a bounce to the orchestrator
    html = page.content.decode()
    assert 'id="evaluate-version"' in html and f'value="{policy.pk}"' in html and "algebra v1 (candidate)" in html
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(add, {"policy": policy.pk})
    job = ProtocolEvaluationJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:training_protocolevaluationjob_change", args=[job.pk])
    assert (job.policy, job.created_by.username, job.protocol) == (policy, "operator", curriculum.protocol.to_dict())
    assert sent == [(TASK, job.pk)]
    with django_capture_on_commit_callbacks(execute=True):
        again = operator_client.post(add, {"policy": policy.pk}, follow=True)
    assert ProtocolEvaluationJob.objects.count() == 1 and "is already queued" in again.content.decode()
    assert operator_client.post(add, {"policy": 999999}).status_code == 200  # refused at the form, nothing launched
    assert ProtocolEvaluationJob.objects.count() == 1


@pytest.mark.django_db
def test_add_needs_the_jobs_add_permission(client, django_user_model, curriculum, make_policy, sent):
    user = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_protocolevaluationjob"))
    client.force_login(user)
    add = reverse("admin:training_protocolevaluationjob_add")
    assert client.post(add, {"policy": make_policy(curriculum, recall=0.5).pk}).status_code == 403
    assert not ProtocolEvaluationJob.objects.exists()
