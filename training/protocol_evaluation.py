"""Evaluating registered policy versions under their curriculum's evaluation protocol, so that the promotion gate
(curriculum.services.promotion_gate) compares like with like. Long work (closed-loop simulation of every policy):
run in a worker (the task ``training.tasks.evaluate_policy_under_protocol``), a training run or a command, never in
a request."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction

from curriculum import selectors
from curriculum.evaluation_protocol import EvaluationProtocol, fallback_key
from curriculum.models import Curriculum, PolicyModel
from curriculum.selectors import active_policy
from curriculum.services import (
    PolicyError, artifact_storage, evaluated_concept_count, held_to_fallback, verify_policy_artifacts,
)
from curriculum.state_specs import StateSpec
from training.rl.artifacts import ARTIFACT_NAMES
from training.rl.evaluation import METRIC, final_recall

from .pipeline import PipelineError, ProgressCallback, evaluate_export

def evaluate_under_protocol(*, policy: PolicyModel, protocol: EvaluationProtocol | None = None,
                            on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Evaluate a registered version under ``protocol`` (default: its curriculum's) and store the result in
    ``policy.evaluations`` (its training-time ``metrics`` stay as they were). Long work (closed-loop simulation
    of every policy): run it in a worker (a ``ProtocolEvaluationJob``, training/jobs/protocol_evaluation.py) or a
    command, never in a request. ``on_progress(stage, done, total, info)`` as ``training.pipeline``'s: "evaluating"
    after each policy's closed loop (``info["policy"]``), then "evaluating the fallback" when that is evaluated too.

    Returns the evaluation (evaluate_policy's JSON plus ``"protocol"``). Raises ArtifactIntegrityError for
    missing or tampered artifacts, PolicyError when the artifacts cannot be evaluated.
    """
    protocol = protocol or policy.curriculum.protocol
    found = selectors.evaluation_under(policy=policy, protocol=protocol)
    if found is not None:
        # evaluated already (at registration, say), but the gate may hold it to a fallback not evaluated yet: a
        # version over more concepts than a version made active since (the button the gate offers runs this)
        _evaluate_its_fallback(policy=policy, protocol=protocol, on_progress=on_progress)
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
                                      interactions=protocol.interactions, on_progress=on_progress)
        except PipelineError as exc:
            raise PolicyError(f"{policy}: cannot evaluate: {exc}") from exc
    metrics = {**metrics, "protocol": protocol.to_dict()}
    with transaction.atomic():
        locked = PolicyModel.objects.select_for_update().get(pk=policy.pk)
        locked.evaluations = {**(locked.evaluations or {}), protocol.key: metrics}
        locked.save(update_fields=["evaluations"])
    policy.evaluations = locked.evaluations
    _evaluate_its_fallback(policy=policy, protocol=protocol, on_progress=on_progress)
    return metrics


def _evaluate_its_fallback(*, policy: PolicyModel, protocol: EvaluationProtocol,
                           on_progress: ProgressCallback | None) -> None:
    """What the promotion gate holds ``policy`` to when no version is active, or when the active one covers fewer
    concepts (``services.held_to_fallback``): the fallback over this version's concepts, evaluated (once: a stored
    one is kept) alongside the version."""
    if not held_to_fallback(candidate=policy, active=active_policy(curriculum=policy.curriculum)):
        return
    num_concepts = evaluated_concept_count(config=policy.config, curriculum_id=policy.curriculum_id)
    if on_progress is not None:  # reported even when stored: the job's bar has the stage (training/jobs/stages.py)
        on_progress("evaluating the fallback", 0, 1, {"policy": policy.curriculum.fallback_rule})
    evaluate_fallback_under_protocol(curriculum=policy.curriculum, protocol=protocol, num_concepts=num_concepts)


def evaluate_fallback_under_protocol(
    *, curriculum: Curriculum, num_concepts: int, protocol: EvaluationProtocol | None = None
) -> dict[str, Any]:
    """The curriculum's fallback rule (``Curriculum.fallback_rule``, by default ``FALLBACK_POLICY``; with serving's
    unfitted default encoder ``StateSpec.default``) on
    the protocol's held-out students over ``num_concepts`` concepts, stored in ``curriculum.fallback_evaluations``
    (once per protocol, concept count and default encoder: a stored one is returned as it is).

    Returns ``{"metric", "students", "seed", "num_concepts", "encoder_identity", "protocol",
    "results": {rule: {"mean", "ci95"}}}``: the same closed loop, students and 95% normal interval as
    ``training.rl.evaluation.evaluate``'s baseline of that name, but with the encoder that serves without a
    version rather than the candidate's fitted one. Long work (seconds for a 600-concept deck): a worker or a
    command. ValueError naming the setting for a protocol outside the evaluation's bounds.
    """
    protocol = protocol or curriculum.protocol
    found = selectors.fallback_evaluation(curriculum=curriculum, protocol=protocol, num_concepts=num_concepts)
    if found is not None:
        return found
    spec = StateSpec.default(num_concepts=num_concepts)
    rule = curriculum.fallback_rule
    values = final_recall(policy_name=rule, num_concepts=num_concepts, students=protocol.students,
                          interactions=protocol.interactions, seed=protocol.seed, encoder=spec.encoder_config)
    mean = float(values.mean())
    half_width = 1.96 * float(values.std(ddof=1)) / np.sqrt(protocol.students)
    evaluation = {
        "metric": METRIC, "students": protocol.students, "seed": protocol.seed, "num_concepts": num_concepts,
        "encoder_identity": spec.identity, "protocol": protocol.to_dict(),
        "results": {rule: {"mean": mean, "ci95": [mean - half_width, mean + half_width]}},
    }
    with transaction.atomic():
        locked = Curriculum.objects.select_for_update().get(pk=curriculum.pk)
        locked.fallback_evaluations = {**(locked.fallback_evaluations or {}),
                                       fallback_key(protocol, num_concepts, rule): evaluation}
        locked.save(update_fields=["fallback_evaluations"])
    curriculum.fallback_evaluations = locked.fallback_evaluations
    return evaluation


def evaluate_active_under_protocol(
    *, curriculum: Curriculum, protocol: EvaluationProtocol | None = None, num_concepts: int | None = None
) -> PolicyModel | None:
    """Make sure what serves now has an evaluation under the curriculum's protocol, so that a new candidate's gate
    compares like with like: the active version (evaluated when it has none), and with no active version, or one
    over fewer concepts than ``num_concepts`` (``services.promotion_gate``), the fallback rule over
    ``num_concepts`` concepts (the candidate's; ``evaluate_fallback_under_protocol``) under
    ``protocol`` (default the curriculum's; a first version passes the protocol its registration will store).
    Returns the active version or None. Called by ``training.services.train_and_register`` before it registers
    (long work: a worker or a command)."""
    active = active_policy(curriculum=curriculum)
    if active is not None:
        active.curriculum = curriculum
        evaluate_under_protocol(policy=active)
    if num_concepts is not None and (active is None or evaluated_concept_count(
            config=active.config, curriculum_id=curriculum.pk) < num_concepts):
        evaluate_fallback_under_protocol(curriculum=curriculum, protocol=protocol, num_concepts=num_concepts)
    return active
