"""`train_crl_policy` and `evaluate_policy` end to end, on tiny sizes (seconds, not minutes)."""
from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from curriculum.models import Concept, Curriculum, PolicyModel, PromotionEvent, ReviewLog
from training.rl.artifacts import verify_artifacts
from training.rl.trainer import cpu_has_bfloat16_units

pytestmark = pytest.mark.django_db

# tiny sizes, and no policy-gradient stage (on by default for synthetic data: 50 rounds of 256 students x 4); a test
# that wants the stage names its rounds after TINY (the last flag wins)
TINY = ["--num_users", "24", "--interactions", "24", "--epochs", "1", "--batch_size", "16", "--eval_students", "6",
        "--no_cuda", "--no-progress", "--policy-gradient-rounds", "0"]
POLICIES = {"dt", "random", "round_robin", "leitner", "lowest_recall", "oracle", "planner"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def assert_evaluation_shape(data: dict, *, students: int, seed: int) -> None:
    # stored metrics name their protocol and what the policy was trained on ("training_data"); "students_like"
    # (the fitted students) only when the encoder's FSRS-6 was fitted, with what it was fitted to when known
    assert set(data) - {"protocol", "students_like", "students_like_fitted_to", "training_data", "families"} == {
        "metric", "students", "seed", "results"}
    if "students_like_fitted_to" in data:
        assert "students_like" in data and data["students_like_fitted_to"] in ("review_log", "simulated_pilot")
    if "training_data" in data:
        assert set(data["training_data"]) == {"episodes", "steps", "concepts", "warnings"}
    assert (data["metric"], data["students"], data["seed"]) == ("mean_final_recall", students, seed)
    for block in ("results", "students_like"):
        if block not in data:
            continue
        assert set(data[block]) == POLICIES
        for name, result in data[block].items():
            lo, hi = result["ci95"]
            assert set(result) == {"mean", "ci95"} and 0.0 <= lo <= result["mean"] <= hi <= 1.0, name


@pytest.mark.trains
def test_a_tiny_training_run_writes_the_three_artifacts_and_an_evaluation_that_parses(tmp_path):
    out_dir = tmp_path / "models"
    summary = run("train_crl_policy", "--output_dir", str(out_dir), "--concepts", "6", *TINY)

    config, weights = verify_artifacts(directory=out_dir)  # raises on any inconsistency
    assert (out_dir / "dt_model.pt").is_file()
    assert config["action_dim"] == 6 and config["state_dim"] == 24 and config["concept_keys"] == [str(i) for i in range(6)]
    assert np.isfinite(config["target_return"]) and config["extra"]["loss_history"]
    # the encoder is FSRS-6 fitted to the synthetic log (a log this small keeps the default 21 parameters but has
    # its same-day table) and the model has the concept head
    assert config["encoder"]["estimator"] == "fsrs6" and len(config["encoder"]["fsrs6_same_day_stability"]) == 4
    assert config["concept_features"] == 4
    assert_evaluation_shape(json.loads((out_dir / "evaluation.json").read_text()), students=6, seed=1234)
    assert "lowest_recall" in summary and "Final loss" in summary and "dt_lite_weights.npz" in summary
    # where it trained: the device, dtype, optimiser pace and time per stage, in the config and the summary
    extra = config["extra"]
    expected = "bfloat16 autocast" if cpu_has_bfloat16_units() else "float32"  # the CPU default
    assert (extra["device"], extra["device_name"], extra["dtype"]) == ("cpu", "cpu", expected)
    assert extra["steps_per_s"] > 0 and extra["optimizer_steps"] > 0
    assert set(extra["stage_seconds"]) == {"data", "training"}
    assert f"Trained on: cpu (cpu, {expected})" in summary and "optimiser steps/s; data" in summary
    # synthetic students: the encoder was fitted to the simulated pilot, not to a review log (its fitted students, when
    # there are some, are students like the training cohort)
    assert extra["encoder_fitted_to"] == "simulated_pilot"

    printed = run("evaluate_policy", "--policy_dir", str(out_dir), "--students", "5", "--seed", "7", "--json")
    assert_evaluation_shape(json.loads(printed), students=5, seed=7)
    assert not Curriculum.objects.exists() and not PolicyModel.objects.exists()  # nothing registered unasked


@pytest.mark.trains
def test_attention_window_trains_a_windowed_model_that_steps_like_its_full_forward(tmp_path):
    from training.rl.dtlite import DTLite

    out_dir = tmp_path / "models"
    run("train_crl_policy", "--output_dir", str(out_dir), "--concepts", "4", "--attention-window", "6", *TINY)
    config, _ = verify_artifacts(directory=out_dir)
    assert config["attention_window"] == 6
    lite = DTLite.load(out_dir / "dt_lite_weights.npz", out_dir / "dt_lite_config.json")
    rng = np.random.default_rng(0)
    N, K = 23, config["context_length"]
    h = {"returns_to_go": rng.random((1, N), dtype=np.float32), "states": rng.random((1, N, 16), dtype=np.float32),
         "actions": rng.integers(0, 4, (1, N)), "timesteps": np.arange(N)[None]}
    state = lite.prefill(**{k: v[:, :K] for k, v in h.items()})
    for i in range(K, N):
        state = lite.step(state, h["actions"][:, i - 1], h["returns_to_go"][:, i], h["states"][:, i],
                          h["timesteps"][:, i])
    full = lite.action_logits(**{k: v[:, N - K:] for k, v in h.items()})[:, -1]
    np.testing.assert_allclose(state.logits, full, atol=1e-5, rtol=0)


@pytest.mark.trains
def test_leave_one_family_out_trains_without_it_and_evaluates_on_every_family(tmp_path):
    out_dir = tmp_path / "models"
    summary = run("train_crl_policy", "--output_dir", str(out_dir), "--concepts", "4", "--families",
                  "builtin,fsrs6,hlr", *TINY)
    data = json.loads((out_dir / "evaluation.json").read_text())
    assert_evaluation_shape(data, students=6, seed=1234)
    # the held-out family (actr) is evaluated like the others, and so are the fitted students where there are some
    fitted = ["fitted"] if "students_like" in data else []
    assert list(data["families"]) == ["builtin", "fsrs6", "actr", "hlr", *fitted]
    actr = data["families"]["actr"]
    assert set(actr["paired"]) == {"random", "round_robin", "leitner", "lowest_recall", "oracle", "planner",
                                  "target_recall"}
    assert actr["best_behaviour"] in ("random", "leitner", "target_recall")
    assert "| actr | dt |" in summary and "gap closed" in summary

    printed = run("evaluate_policy", "--policy_dir", str(out_dir), "--students", "4", "--families", "actr", "--json")
    assert list(json.loads(printed)["families"]) == ["actr"]
    with pytest.raises(CommandError, match="unknown student family 'act-r'"):
        run("evaluate_policy", "--policy_dir", str(out_dir), "--families", "act-r")


@pytest.mark.trains
def test_training_is_deterministic_for_a_seed_on_the_cpu(tmp_path):
    run("train_crl_policy", "--output_dir", str(tmp_path / "a"), "--concepts", "4", *TINY)
    run("train_crl_policy", "--output_dir", str(tmp_path / "b"), "--concepts", "4", *TINY)
    assert (tmp_path / "a" / "dt_lite_weights.npz").read_bytes() == (tmp_path / "b" / "dt_lite_weights.npz").read_bytes()


@pytest.mark.trains
def test_policy_gradient_rounds_fine_tune_the_trained_model_and_the_export_records_them(tmp_path):
    """--policy-gradient-rounds: the offline model (the same seed's, without the flag) is fine-tuned in the training
    families' students, one family a round; the export records the settings and the rounds, and its DTLite is still
    the fine-tuned model's exact twin."""
    import torch

    from training.rl.dt import DecisionTransformer
    from training.rl.dtlite import DTLite

    run("train_crl_policy", "--output_dir", str(tmp_path / "offline"), "--concepts", "4", "--families",
        "builtin,hlr", *TINY)
    run("train_crl_policy", "--output_dir", str(tmp_path / "tuned"), "--concepts", "4", "--families", "builtin,hlr",
        *TINY, "--policy-gradient-rounds", "2")
    config = json.loads((tmp_path / "tuned" / "dt_lite_config.json").read_text())
    tuned = config["extra"]["policy_gradient"]
    assert tuned["rounds"] == 2 and tuned["families"] == ["builtin", "hlr"] and tuned["interactions"] == 24
    assert [r.get("family") for r in tuned["rounds_figures"]] == [None, "builtin", "hlr"]  # round 0: the offline
    assert all(0.0 <= r["sampled_return"] <= 1.0 for r in tuned["rounds_figures"][1:])
    assert sum(bool(r.get("kept")) for r in tuned["rounds_figures"]) == 1
    assert config["extra"]["stage_seconds"]["policy_gradient"] > 0
    assert "policy_gradient" not in json.loads((tmp_path / "offline" / "dt_lite_config.json").read_text())["extra"]
    offline = np.load(tmp_path / "offline" / "dt_lite_weights.npz", allow_pickle=False)
    weights = np.load(tmp_path / "tuned" / "dt_lite_weights.npz", allow_pickle=False)
    kept = next(r["round"] for r in tuned["rounds_figures"] if r.get("kept"))
    assert any(not np.array_equal(offline[name], weights[name]) for name in weights.files) == (kept > 0)
    model = DecisionTransformer.from_checkpoint(tmp_path / "tuned" / "dt_model.pt")
    lite = DTLite.load(tmp_path / "tuned" / "dt_lite_weights.npz", tmp_path / "tuned" / "dt_lite_config.json")
    rng = np.random.default_rng(0)
    K = model.config.context_length
    inputs = (rng.random((2, K), dtype=np.float32), rng.random((2, K, model.config.state_dim), dtype=np.float32),
              rng.integers(0, 4, (2, K)), np.broadcast_to(np.arange(K), (2, K)).copy())
    with torch.no_grad():
        expected = model(*(torch.as_tensor(x) for x in inputs)).numpy()
    assert np.abs(lite.action_logits(*inputs) - expected).max() <= 1e-5


def test_policy_gradient_rounds_are_refused_for_data_no_family_simulates():
    from training.pipeline import PipelineError, policy_gradient_config
    from training.rl.policy_gradient import PolicyGradientConfig

    assert policy_gradient_config(rounds=0, source="review_log", students_like=None, families=None,
                                  interactions=10) is None
    made = policy_gradient_config(rounds=3, source="synthetic", students_like=None, families="builtin,actr",
                                  interactions=10)
    assert (made.rounds, made.families, made.interactions) == (3, ("builtin", "actr"), 10)
    for source, like in (("review_log", None), ("dataset", None), ("synthetic", "spanish")):
        with pytest.raises(PipelineError, match="needs synthetic data without --students-like"):
            policy_gradient_config(rounds=3, source=source, students_like=like, families=None, interactions=10)
        # the default (None): the stage's own number of rounds where it applies, off where it does not
        assert policy_gradient_config(rounds=None, source=source, students_like=like, families=None,
                                      interactions=10) is None
    default = policy_gradient_config(rounds=None, source="synthetic", students_like=None, families=None,
                                     interactions=10)
    assert (default.rounds, default.families) == (PolicyGradientConfig.rounds, ("builtin",)) and default.rounds > 0


def test_the_default_stage_is_skipped_and_asked_rounds_refused_when_a_rounds_episodes_outgrow_memory():
    """A round records samples x students x interactions x state floats: the default stage steps aside for a deck
    whose episodes would pass POLICY_GRADIENT_EPISODE_BYTES (said in the progress), rounds asked for are refused."""
    from training.pipeline import POLICY_GRADIENT_EPISODE_BYTES, PipelineError, _fits_in_memory, policy_gradient_config

    config = policy_gradient_config(rounds=None, source="synthetic", students_like=None, families=None,
                                    interactions=100)
    assert config.episode_bytes(80) == 4 * 4 * 256 * 100 * 80  # the default run: 20 concepts x 4 features
    assert _fits_in_memory(config, state_dim=80, asked=False, progress=None) is config
    too_many = POLICY_GRADIENT_EPISODE_BYTES // (4 * 4 * 256 * 100) + 1
    seen = []
    assert _fits_in_memory(config, state_dim=too_many, asked=False,
                           progress=lambda stage, done, total, info=None: seen.append((stage, info))) is None
    assert seen[0][0] == "policy gradient" and "GiB" in seen[0][1]["skipped"]
    with pytest.raises(PipelineError, match=r"--policy-gradient-rounds: a round's episodes would hold .* GiB"):
        _fits_in_memory(config, state_dim=too_many, asked=True, progress=None)
    assert _fits_in_memory(None, state_dim=too_many, asked=True, progress=None) is None


@pytest.mark.trains
def test_the_recipe_flags_reach_the_trainer_and_the_config_records_them(tmp_path):
    from training.pipeline import TRAIN_DEFAULTS

    run("train_crl_policy", "--output_dir", str(tmp_path / "default"), "--concepts", "4", *TINY, "--cpu-float32")
    run("train_crl_policy", "--output_dir", str(tmp_path / "chosen"), "--concepts", "4", *TINY,
        "--lr-schedule", "constant", "--coverage", "1.5", "--cpu-bfloat16")
    default = json.loads((tmp_path / "default" / "dt_lite_config.json").read_text())["extra"]
    chosen = json.loads((tmp_path / "chosen" / "dt_lite_config.json").read_text())["extra"]
    assert (default["lr_schedule"], default["coverage"]) == (TRAIN_DEFAULTS.lr_schedule, TRAIN_DEFAULTS.coverage)
    assert (chosen["lr_schedule"], chosen["coverage"]) == ("constant", 1.5)
    assert (default["dtype"], chosen["dtype"]) == ("float32", "bfloat16 autocast")
    # one epoch of coverage x 576 reviews / context 20 windows, 16 a step: 44 windows in 3 steps at coverage 1.5
    assert chosen["optimizer_steps"] == 3
    assert default["optimizer_steps"] == math.ceil(math.ceil(TRAIN_DEFAULTS.coverage * 576 / 20) / 16)


@pytest.mark.trains
def test_register_and_promote_serve_a_new_curriculum_with_its_keys(tmp_path):
    summary = run("train_crl_policy", "--output_dir", str(tmp_path / "m"), "--curriculum", "spanish", "--concepts", "5",
                  "--promote", "--force", "--reason", "a 1-epoch model: below random", *TINY)

    curriculum = Curriculum.objects.get(key="spanish")
    keys = list(curriculum.concepts.order_by("position").values_list("key", flat=True))
    assert keys == ["c00", "c01", "c02", "c03", "c04"]
    policy = PolicyModel.objects.get(curriculum=curriculum)
    assert (policy.version, policy.status) == (1, PolicyModel.Status.ACTIVE)
    assert policy.config["concept_keys"] == keys
    assert_evaluation_shape(policy.metrics, students=6, seed=1234)
    assert PromotionEvent.objects.filter(curriculum=curriculum, to_version=1).count() == 1
    assert "Registered spanish v1 (active)" in summary

    # The next run trains on that curriculum's concepts (their count, their keys) without being told.
    run("train_crl_policy", "--output_dir", str(tmp_path / "m2"), "--curriculum", "spanish", "--register", *TINY)
    second = PolicyModel.objects.get(curriculum=curriculum, version=2)
    assert second.status == PolicyModel.Status.CANDIDATE and second.config["concept_keys"] == keys


@pytest.mark.trains
def test_training_from_the_database_uses_the_curricula_reviews(tmp_path, make_curriculum):
    from training import jobs

    curriculum = make_curriculum("db", concepts=4)
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=12, interactions=15, seed=3)
    jobs.run_synthetic_generation(job_id=job.pk)
    assert ReviewLog.objects.filter(curriculum=curriculum).count() == 180

    summary = run("train_crl_policy", "--from-db", "--curriculum", "db", "--output_dir", str(tmp_path / "m"),
                  "--register", *TINY)
    policy = PolicyModel.objects.get(curriculum=curriculum)
    assert policy.config["concept_keys"] == ["c0", "c1", "c2", "c3"]
    assert policy.config["encoder"]["estimator"] == "fsrs6"  # fitted to the curriculum's log
    assert len(policy.config["encoder"]["fsrs6_same_day_stability"]) == 4
    assert policy.config["extra"]["encoder_fitted_to"] == "review_log"
    assert "12 episodes, 180 steps" in summary


@pytest.mark.trains
def test_training_on_an_extracted_dataset_serves_its_curriculum(tmp_path, make_curriculum):
    from training import jobs

    curriculum = make_curriculum("ds", concepts=4)
    generation = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=10, interactions=12, seed=5)
    jobs.run_synthetic_generation(job_id=generation.pk)
    extraction = jobs.launch_trajectory_extraction(curriculum=curriculum)
    jobs.run_trajectory_extraction(job_id=extraction.pk)
    extraction.refresh_from_db()
    assert (extraction.status, extraction.version) == ("succeeded", 1), extraction.error
    ReviewLog.objects.filter(curriculum=curriculum).delete()  # the dataset, not the log, is what trains

    summary = run("train_crl_policy", "--curriculum", "ds", "--dataset", "latest", "--output_dir", str(tmp_path / "m"),
                  "--register", *TINY)
    policy = PolicyModel.objects.get(curriculum=curriculum)
    assert policy.config["concept_keys"] == ["c0", "c1", "c2", "c3"]
    assert policy.config["encoder"] == extraction_encoder(extraction)  # the dataset's fitted encoder
    assert policy.config["extra"]["encoder_fitted_to"] == "review_log"  # fitted to the log it was extracted from
    assert "10 episodes, 120 steps" in summary
    assert '"source": "dataset"' in policy.notes


def extraction_encoder(job) -> dict:
    from training import pipeline

    return pipeline.load_extracted_dataset(job=job).encoder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-db"], "--from-db needs --curriculum"),
        (["--register"], "need --curriculum"),
        (["--num_users", "0"], "--num_users: expected 1 to"),
        (["--concepts", "1"], "--concepts: expected 2 to"),
        (["--from-db", "--curriculum", "nowhere"], "no curriculum 'nowhere'"),
        (["--promote", "--curriculum", "x", "--force"], "--force needs --reason"),
        (["--dataset", "1"], "--dataset needs --curriculum"),
        (["--dataset", "2", "--curriculum", "nowhere"], "--dataset 2: curriculum 'nowhere' has no such extracted dataset"),
        (["--dataset", "two", "--curriculum", "x"], "--dataset: expected a dataset version"),
        (["--dataset", "1", "--from-db", "--curriculum", "x"], "not allowed with"),
        (["--interactions", "100001"], "--interactions: expected 1 to 100000"),
        (["--seed", "-1"], "--seed: expected 0 to 2147483647, got -1"),
        (["--seed", "99999999999999999999999"], "--seed: expected 0 to 2147483647"),
        (["--eval-processes", "0"], "--eval-processes/--eval_processes: expected a positive integer or 'auto', got 0"),
        (["--eval-processes", "all"], "--eval-processes/--eval_processes: expected a positive integer or 'auto', got 'all'"),
        (["--attention-window", "31"], "--attention-window 31: expected 0 \\(full attention\\) or a window of 1 to 30 "
                                       "tokens"),
        (["--attention-window", "-1"], "--attention-window -1: expected 0 \\(full attention\\) or a window"),
        (["--coverage", "0"], "--coverage: expected a positive number, got '0'"),
        (["--coverage", "nan"], "--coverage: expected a positive number, got 'nan'"),
        (["--lr-schedule", "step"], "--lr-schedule/--lr_schedule: invalid choice: 'step'"),
        (["--policy-gradient-rounds", "-1"], "--policy-gradient-rounds must be 0 \\(off\\) or more, got -1"),
    ],
)
def test_bad_flags_are_refused_with_a_message_naming_them(tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run("train_crl_policy", "--output_dir", str(tmp_path), "--no-progress", *args)
    assert not PolicyModel.objects.exists()


@pytest.mark.parametrize("command, flag", [("train_crl_policy", "--curriculum"), ("train_crl_policy", "--students-like"),
                                           ("evaluate_policy", "--students-like"), ("calibration_report", "--curriculum")])
def test_a_curriculum_key_that_is_not_one_stops_the_command_before_it_does_anything(tmp_path, command, flag):
    folder = {"train_crl_policy": "--output_dir", "evaluate_policy": "--policy_dir"}.get(command)
    with pytest.raises(CommandError, match=r"expected a curriculum key of 1 to 100 letters, digits, '-' or '_', "
                                           r"got '\.\./evil'"):
        run(command, flag, "../evil", *([folder, str(tmp_path / "m")] if folder else []))
    assert not Curriculum.objects.exists() and not (tmp_path / "m").exists()


def test_a_curriculum_without_reviews_or_with_other_concepts_is_refused(tmp_path, make_curriculum):
    make_curriculum("empty", concepts=3)
    with pytest.raises(CommandError, match="curriculum 'empty' has no reviews"):
        run("train_crl_policy", "--from-db", "--curriculum", "empty", "--output_dir", str(tmp_path), *TINY)
    with pytest.raises(CommandError, match="curriculum 'empty' has 3 concepts"):
        run("train_crl_policy", "--curriculum", "empty", "--concepts", "5", "--output_dir", str(tmp_path), *TINY)
    assert Concept.objects.filter(curriculum__key="empty").count() == 3


def test_evaluate_policy_refuses_a_seed_out_of_bounds_naming_the_flag(tmp_path):
    with pytest.raises(CommandError, match=r"--seed: expected 0 to 2147483647, got -1"):
        run("evaluate_policy", "--policy_dir", str(tmp_path), "--seed", "-1", "--json")


@pytest.mark.trains
def test_a_refused_promotion_still_prints_what_was_trained_and_registered(tmp_path):
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"registered spanish v1 \(candidate\) but did not promote it: .*below the "
                                           r"random baseline"):
        call_command("train_crl_policy", "--output_dir", str(tmp_path / "m"), "--curriculum", "spanish",
                     "--concepts", "5", "--promote", *TINY, stdout=out, stderr=io.StringIO())
    printed = out.getvalue()
    assert "Artifacts in" in printed and "Evaluation: mean_final_recall" in printed
    assert "Registered spanish v1 (candidate)" in printed
    # each file with its whole SHA-256 (docs/commands.md), which the registered version's artifacts record
    version = PolicyModel.objects.get(curriculum__key="spanish")
    for name, entry in version.artifacts.items():
        assert re.search(rf"{re.escape(name)}\s+sha256 {entry['sha256']}$", printed, re.M), name
    assert PolicyModel.objects.get(curriculum__key="spanish").status == PolicyModel.Status.CANDIDATE


@pytest.mark.trains
def test_a_run_that_registers_nothing_fixes_no_protocol_and_the_first_version_does(tmp_path):
    args = ["train_crl_policy", "--curriculum", "proto", "--concepts", "4", *TINY]
    run(*args, "--output_dir", str(tmp_path / "try"), "--eval_students", "5")  # an operator trying flags
    assert not Curriculum.objects.get(key="proto").evaluation_protocol

    printed = run(*args, "--output_dir", str(tmp_path / "v1"), "--eval_students", "7", "--register")
    assert Curriculum.objects.get(key="proto").evaluation_protocol["students"] == 7
    assert PolicyModel.objects.get(curriculum__key="proto").metrics["protocol"]["students"] == 7
    # the run's own settings (nothing to size on 4 concepts): nothing differs, and registering says it fixed them
    assert "Evaluated with" not in printed
    assert "Registering proto v1 fixed its evaluation protocol: 7 students" in printed

    printed = run(*args, "--output_dir", str(tmp_path / "v2"), "--eval_students", "9", "--register")
    assert PolicyModel.objects.get(curriculum__key="proto", version=2).metrics["students"] == 7
    # only what differs is named, and why: the curriculum's protocol; nothing newly fixed
    assert "Evaluated with 7 students, not --eval_students 9 (seed 1234): the evaluation protocol of curriculum 'proto'" in printed
    assert "--interactions" not in printed and "fixed its evaluation protocol" not in printed


@pytest.mark.trains
def test_evaluate_policy_refuses_a_folder_without_a_policy_or_with_a_tampered_one(tmp_path):
    with pytest.raises(CommandError, match="not a directory"):
        run("evaluate_policy", "--policy_dir", str(tmp_path / "missing"), "--json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="dt_lite_config.json|dt_lite_weights.npz"):
        run("evaluate_policy", "--policy_dir", str(tmp_path / "empty"), "--json")

    run("train_crl_policy", "--output_dir", str(tmp_path / "m"), "--concepts", "3", *TINY)
    weights = tmp_path / "m" / "dt_lite_weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CommandError, match="SHA-256|dt_lite_weights.npz"):
        run("evaluate_policy", "--policy_dir", str(tmp_path / "m"), "--json")


@pytest.mark.trains
def test_a_first_version_of_a_large_deck_fixes_a_protocol_that_meets_every_concept_and_warns_of_thin_data(tmp_path):
    # 60 concepts, 24 reviews per learner: the run's 24 reviews per evaluated student would meet 24 of them
    printed = run("train_crl_policy", "--curriculum", "deck", "--concepts", "60", *TINY,
                  "--output_dir", str(tmp_path / "v1"), "--register")
    protocol = Curriculum.objects.get(key="deck").protocol
    assert protocol.interactions == 3 * 60 and protocol.students == 6
    metrics = PolicyModel.objects.get(curriculum__key="deck").metrics
    assert metrics["protocol"]["interactions"] == 180
    assert metrics["training_data"]["episodes"] == 24 and metrics["training_data"]["concepts"] == 60
    assert "Warning: too few learners to learn from: 24 episodes" in printed
    assert "Warning: too few reviews to learn from: " in printed


@pytest.mark.trains
def test_the_evaluation_flags_spread_the_loops_over_processes_with_the_same_results(tmp_path, monkeypatch):
    from training.rl import evaluation

    monkeypatch.setattr(evaluation, "POOL_PART_REVIEWS", 1)  # a pool for even this tiny evaluation
    started = []
    real_pool = evaluation.worker_pool

    def recording_pool(workers, **kwargs):
        started.append(workers)
        return real_pool(workers, **kwargs)

    monkeypatch.setattr(evaluation, "worker_pool", recording_pool)
    run("train_crl_policy", "--output_dir", str(tmp_path / "m"), "--concepts", "3", "--eval-processes", "2", *TINY)
    assert started == [2]
    stored = json.loads((tmp_path / "m" / "evaluation.json").read_text())
    args = ["evaluate_policy", "--policy_dir", str(tmp_path / "m"), "--students", "6", "--interactions", "24",
            "--families", "builtin,hlr", "--json"]
    one = json.loads(run(*args, "--processes", "1"))
    two = json.loads(run(*args, "--processes", "2"))
    assert started == [2, 2] and one == two
    assert one["results"] == stored["results"]  # the training run's own evaluation: the same students and seed
    with pytest.raises(CommandError, match="--processes: expected a positive integer or 'auto', got -3"):
        run(*args, "--processes", "-3")


def test_the_summary_says_a_first_protocol_was_sized_from_the_deck_and_names_only_what_differs():
    from types import SimpleNamespace

    from training.management.commands.train_crl_policy import _protocol_lines
    from training.spec import TrainingSpec

    spec = TrainingSpec(eval_students=20, interactions=100)
    sized = {"students": 20, "interactions": 1830, "seed": 1234}
    lines = _protocol_lines(sized, spec=spec, key="real", fixed_before=False, registered=None, concepts=610)
    assert lines == ["Evaluated with 1830 reviews each, not --interactions 100 (seed 1234): curriculum 'real' has no "
                     "protocol yet, so its first is sized from its deck of 610 concepts to meet every concept "
                     "(EvaluationProtocol.sized_for, docs/operations.md)."]
    registered = SimpleNamespace(version=1)
    lines = _protocol_lines(sized, spec=spec, key="real", fixed_before=False, registered=registered, concepts=610)
    assert lines[1] == ("Registering real v1 fixed its evaluation protocol: 20 students, 1830 reviews each, seed 1234, "
                        "for every later version (change it on the Policy orchestrator).")
    # a v2 registered meanwhile by another run fixed nothing of this run's
    assert len(_protocol_lines(sized, spec=spec, key="real", fixed_before=False, registered=SimpleNamespace(version=2),
                               concepts=610)) == 1
    assert _protocol_lines(sized, spec=spec, key="real", fixed_before=True, registered=registered, concepts=610) == [
        "Evaluated with 1830 reviews each, not --interactions 100 (seed 1234): the evaluation protocol of curriculum "
        "'real': every version of a curriculum is evaluated alike (an operator changes it on the Policy orchestrator)."]
