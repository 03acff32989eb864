"""The protocol evaluation job: a registered policy version evaluated under its curriculum's evaluation protocol on a
worker (training.protocol_evaluation.evaluate_under_protocol), with its progress (one closed loop per policy) on the
job's row like every job, so the operator sees it on the orchestrator, the job's page and the worker page."""
from __future__ import annotations

from django.db import transaction

from curriculum.evaluation_protocol import EvaluationProtocol, dt_mean
from curriculum.models import PolicyModel

from ..models import Job, ProtocolEvaluationJob
from .lifecycle import launch_job
from .runner import JobRun, execute

UNFINISHED = (Job.Status.QUEUED, Job.Status.RUNNING)


def launch_protocol_evaluation(*, policy: PolicyModel, created_by=None) -> tuple[ProtocolEvaluationJob, bool]:
    """Evaluate ``policy`` under its curriculum's current protocol on a worker: save and enqueue (on commit) a
    ProtocolEvaluationJob, unless one for the same version and protocol is queued or running already (a second
    click, another operator), which is returned instead. Returns (job, launched). Decided under the version's row
    lock, so two requests at once launch one job. ValidationError naming the field for an unusable protocol."""
    protocol = policy.curriculum.protocol.to_dict()
    with transaction.atomic():
        PolicyModel.objects.select_for_update().get(pk=policy.pk)
        for job in ProtocolEvaluationJob.objects.filter(policy=policy, status__in=UNFINISHED).order_by("-pk"):
            if job.protocol == protocol:
                return job, False
        job = launch_job(job=ProtocolEvaluationJob(curriculum_id=policy.curriculum_id, policy=policy,
                                                   protocol=protocol, created_by=created_by))
    return job, True


def unfinished_evaluations(*, policies: list[PolicyModel]) -> dict[int, ProtocolEvaluationJob]:
    """The newest queued or running protocol evaluation job of each of ``policies``, by policy id (one query)."""
    found: dict[int, ProtocolEvaluationJob] = {}
    for job in ProtocolEvaluationJob.objects.filter(policy__in=policies, status__in=UNFINISHED).order_by("-pk"):
        found.setdefault(job.policy_id, job)
    return found


def run_protocol_evaluation(*, job_id: int, worker: str = "") -> ProtocolEvaluationJob | None:
    """Evaluate the job's version under the protocol it was launched with and store it on the version
    (``PolicyModel.evaluations``); the job keeps each policy's mean (``result``). Idempotent like every job."""
    return execute(ProtocolEvaluationJob, job_id=job_id, worker=worker, work=_evaluate)


def _evaluate(run: JobRun) -> None:
    from ..protocol_evaluation import evaluate_under_protocol

    job: ProtocolEvaluationJob = run.job  # type: ignore[assignment]
    policy = PolicyModel.objects.select_related("curriculum").get(pk=job.policy_id)
    protocol = EvaluationProtocol.from_dict(job.protocol)
    run.report(phase="copying the artifacts", step=0, steps=0)

    def progress(stage: str, done: int, total: int, info: dict | None = None) -> None:
        # the phase is the stage's name alone (training/jobs/stages.py draws the bar from it); the count says how far
        run.report(phase=stage, step=done, steps=max(total, done))
        run.check()

    metrics = evaluate_under_protocol(policy=policy, protocol=protocol, on_progress=progress)
    run.check()
    results = metrics.get("results") or {}
    result = {"protocol": protocol.to_dict(), "dt": dt_mean(metrics),
              "means": {name: dt_mean(metrics, name) for name in results}}
    with transaction.atomic():
        run.finish(result=result)
