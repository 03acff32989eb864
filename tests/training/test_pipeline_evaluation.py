"""``pipeline.evaluate_export``, what `evaluate_policy` and a training run's evaluation stage run: the progress it
announces (the whole count from the first report) and what it says its fitted students are like."""
from __future__ import annotations

import io
import json

import pytest
import torch
from django.core.management import call_command
from fsrs.scheduler import DEFAULT_PARAMETERS

from training import pipeline
from training.rl.checkpoint import export_artifacts
from training.rl.dt import DecisionTransformer, DTConfig
from training.rl.encoder import EncoderConfig
from training.rl.evaluation import BASELINES, EXTRA_BASELINES, closed_loop_count, evaluate
from training.rl.students import StudentsLike

C = 4
SMALL = dict(students=4, interactions=6, seed=11, processes=1)


def export_policy(folder, *, fitted: bool = True, extra: dict | None = None):
    """An untrained DTLite of C concepts whose encoder has fitted FSRS-6 parameters (the package's defaults stand in
    for a fit) when ``fitted``, as a training run exports it (``extra``: dt_lite_config.json's)."""
    encoder = EncoderConfig(num_concepts=C, fsrs6_parameters=tuple(DEFAULT_PARAMETERS) if fitted else None)
    torch.manual_seed(1)
    model = DecisionTransformer(DTConfig(state_dim=encoder.state_dim, action_dim=C, hidden_dim=16, num_layers=1,
                                         num_heads=2, context_length=4, max_timestep=32, return_scale=1.0)).eval()
    export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i}" for i in range(C)],
                     encoder=encoder.to_dict(), target_return=0.5, extra=extra, onnx=False)
    return folder


@pytest.fixture(scope="module")
def synthetic_policy(tmp_path_factory):
    """What synthetic training exports: the encoder fitted to the simulated pilot, recorded in "extra"."""
    return export_policy(tmp_path_factory.mktemp("synthetic"), extra={"encoder_fitted_to": "simulated_pilot"})


def test_the_evaluation_announces_its_whole_count_from_the_first_report(synthetic_policy):
    """Two populations (the built-in students and the fitted ones, 8 policies each with the behaviour reference): the
    first report, which stands while the DT's first loop runs, says 16, not one population's 7."""
    seen = []
    pipeline.evaluate_export(output_dir=synthetic_policy, families=("builtin",),
                             on_progress=lambda stage, done, total, info: seen.append((stage, done, total)), **SMALL)
    per_population = 1 + len(BASELINES) + len(EXTRA_BASELINES) + 1  # dt, the baselines, target_recall
    assert seen[0] == ("evaluating", 0, 2 * per_population)
    assert {total for _, _, total in seen} == {2 * per_population}
    assert seen[-1] == ("evaluating", 2 * per_population, 2 * per_population)


@pytest.mark.parametrize("families, fitted", [
    (None, False), (None, True), ((), True), (("builtin",), False), (("builtin",), True), (("actr", "fitted"), True),
    ("builtin,fsrs6,actr,hlr", False), ("builtin,fsrs6,actr,hlr,fitted", True)])  # "fitted" needs fitted students
def test_closed_loop_count_is_the_total_evaluate_reports(synthetic_policy, families, fitted):
    from training.rl.dtlite import DTLite

    policy = DTLite.load(synthetic_policy / "dt_lite_weights.npz", synthetic_policy / "dt_lite_config.json")
    like = StudentsLike.package_defaults()
    encoder = EncoderConfig(num_concepts=C)  # unfitted: the fitted students only when given
    totals = []
    evaluate(policy=policy, num_concepts=C, encoder=encoder, students_like=like if fitted else None,
             families=families, on_progress=lambda done, total, name: totals.append(total), students=3,
             interactions=4, processes=1)
    assert set(totals) == {closed_loop_count(policy=True, fitted=fitted, families=families)}
    assert len(totals) == totals[0]


def test_the_fitted_students_of_synthetic_training_are_said_to_be_like_the_training_cohort(synthetic_policy,
                                                                                          tmp_path):
    metrics = pipeline.evaluate_export(output_dir=synthetic_policy, families=(), **SMALL)
    assert "students_like" in metrics and metrics["students_like_fitted_to"] == "simulated_pilot"
    # fitted to a curriculum's log (--students-like): students like that curriculum's own
    given = pipeline.evaluate_export(output_dir=synthetic_policy, families=(),
                                     students_like=StudentsLike.package_defaults(), **SMALL)
    assert given["students_like_fitted_to"] == "review_log"
    # a policy exported before the record: not said (the pages then ask the version's training run)
    older = pipeline.evaluate_export(output_dir=export_policy(tmp_path / "older"), families=(), **SMALL)
    assert "students_like" in older and "students_like_fitted_to" not in older
    # no fitted students: nothing to name
    plain = pipeline.evaluate_export(output_dir=export_policy(tmp_path / "plain", fitted=False,
                                                              extra={"encoder_fitted_to": "simulated_pilot"}),
                                     families=(), **SMALL)
    assert "students_like" not in plain and "students_like_fitted_to" not in plain


def test_evaluate_policy_names_the_fitted_students_of_a_synthetic_policy_truly(synthetic_policy):
    """`evaluate_policy --policy_dir` on the demo's kind of policy (synthetic students): its fitted students are like
    the training cohort (FSRS-6 fitted to the simulated pilot), not like the curriculum's own."""
    out = io.StringIO()
    call_command("evaluate_policy", "--policy_dir", str(synthetic_policy), "--students", "4", "--interactions", "6",
                 "--families", "none", stdout=out, stderr=io.StringIO())
    printed = out.getvalue()
    assert "Students like the training cohort (FSRS-6 fitted to the simulated pilot" in printed
    assert "curriculum's own" not in printed
    out = io.StringIO()
    call_command("evaluate_policy", "--policy_dir", str(synthetic_policy), "--students", "4", "--interactions", "6",
                 "--families", "none", "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue())["students_like_fitted_to"] == "simulated_pilot"
