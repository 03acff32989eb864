"""Evaluating registered policy versions under their curriculum's evaluation protocol, so that the promotion gate
(curriculum.services.promotion_gate) compares like with like. Long work (closed-loop simulation of every policy):
run in a worker (the task ``training.tasks.evaluate_policy_under_protocol``), a training run or a command, never in
a request."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.db import transaction

from curriculum import selectors
from curriculum.evaluation_protocol import EvaluationProtocol
from curriculum.models import Curriculum, PolicyModel
from curriculum.selectors import active_policy
from curriculum.services import PolicyError, artifact_storage, verify_policy_artifacts
from training.rl.artifacts import ARTIFACT_NAMES

from .pipeline import PipelineError, evaluate_export

def evaluate_under_protocol(*, policy: PolicyModel, protocol: EvaluationProtocol | None = None) -> dict[str, Any]:
    """Evaluate a registered version under ``protocol`` (default: its curriculum's) and store the result in
    ``policy.evaluations`` (its training-time ``metrics`` stay as they were). Long work (closed-loop simulation
    of every policy): run it in a worker (``curriculum.services.request_protocol_evaluation``) or a command, never in a request.

    Returns the evaluation (evaluate_policy's JSON plus ``"protocol"``). Raises ArtifactIntegrityError for
    missing or tampered artifacts, PolicyError when the artifacts cannot be evaluated.
    """
    protocol = protocol or policy.curriculum.protocol
    found = selectors.evaluation_under(policy=policy, protocol=protocol)
    if found is not None:
        return found
    verify_policy_artifacts(policy=policy)
    storage = artifact_storage()
    with tempfile.TemporaryDirectory(prefix=f"crl-eval-{policy.pk}-") as tmp:
        for name in ARTIFACT_NAMES:
            with storage.open(policy.artifacts[name]["path"], "rb") as src, open(Path(tmp) / name, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
        try:
            metrics = evaluate_export(output_dir=tmp, students=protocol.students, seed=protocol.seed,
                                      interactions=protocol.interactions)
        except PipelineError as exc:
            raise PolicyError(f"{policy}: cannot evaluate: {exc}") from exc
    metrics = {**metrics, "protocol": protocol.to_dict()}
    with transaction.atomic():
        locked = PolicyModel.objects.select_for_update().get(pk=policy.pk)
        locked.evaluations = {**(locked.evaluations or {}), protocol.key: metrics}
        locked.save(update_fields=["evaluations"])
    policy.evaluations = locked.evaluations
    return metrics


def evaluate_active_under_protocol(*, curriculum: Curriculum) -> PolicyModel | None:
    """Make sure the curriculum's active version has an evaluation under the curriculum's protocol (evaluating
    it when it has none), so that a new candidate's gate compares like with like; the active version or None.
    Called by training runs and ``train_crl_policy`` after training (long work: a worker or a command)."""
    active = active_policy(curriculum=curriculum)
    if active is not None:
        active.curriculum = curriculum
        evaluate_under_protocol(policy=active)
    return active
