"""The training loop: window sampling, determinism, epoch checkpoints and resuming, cancellation, learning."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.rl.dt import DTConfig
from training.rl.model_config import max_attention_window
from training.rl.trainer import (
    TrainConfig,
    TrainingCancelled,
    cpu_has_bfloat16_units,
    default_model_config,
    device_name,
    learning_rate_factor,
    sample_windows,
    target_return,
    train,
    training_autocast,
    training_dtype,
)
from training.rl.trajectories import TrajectoryDataset

S, A, K = 8, 4, 6
TINY = DTConfig(state_dim=S, action_dim=A, hidden_dim=16, num_layers=1, num_heads=2, context_length=K,
                max_timestep=64)


def toy_dataset(*, episodes: int = 12, seed: int = 0) -> TrajectoryDataset:
    """The logged action is the concept with the lowest first-feature block: learnable from the state alone."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 20, size=episodes)
    n = int(lengths.sum())
    states = rng.random((n, S)).astype(np.float32)
    actions = states[:, :A].argmin(axis=1)
    rewards = rng.random(n).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    rtg = np.concatenate([np.cumsum(rewards[a:b][::-1])[::-1] for a, b in zip(starts[:-1], starts[1:])])
    return TrajectoryDataset(states=states, actions=actions, rewards=rewards, returns_to_go=rtg,
                             timesteps=np.concatenate([np.arange(k) for k in lengths]), episode_starts=starts,
                             concept_keys=[f"c{i}" for i in range(A)])


def _after_steps(steps: int):
    """A should_stop that lets ``steps`` optimiser steps run, then stops (it is asked before every step)."""
    asked = iter(range(steps + 1))
    return lambda: next(asked, steps) >= steps


def quick(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "windows_per_epoch": 24, "learning_rate": 1e-3,
                          **overrides})


def test_windows_are_left_padded_at_episode_starts():
    dataset = toy_dataset()
    batch = sample_windows(dataset, rng=np.random.default_rng(0), batch_size=256, context_length=K)
    mask = batch["attention_mask"]
    assert mask[:, -1].all()  # every window ends at a real step
    assert np.all(np.diff(mask, axis=1) >= 0)  # padding only on the left
    assert (mask.sum(axis=1) < K).any() and (mask.sum(axis=1) == K).any()
    for name in ("returns_to_go", "actions", "timesteps"):
        assert np.all(batch[name][mask == 0] == 0)
    # valid timesteps are consecutive within one episode and the first valid one follows the padding
    t = np.where(mask == 1, batch["timesteps"], -1)
    starts_inside = (mask.sum(axis=1) < K)
    assert np.all(t[starts_inside].max(axis=1) - (mask[starts_inside].sum(axis=1) - 1) == 0)


def test_target_return_is_a_quantile_of_episode_returns():
    dataset = toy_dataset()
    episode_returns = dataset.returns_to_go[dataset.episode_starts[:-1]]
    assert target_return(dataset, quantile=1.0) == pytest.approx(episode_returns.max())
    assert target_return(dataset, quantile=0.9) == pytest.approx(np.quantile(episode_returns, 0.9))


@pytest.mark.trains
def test_training_is_deterministic_for_a_seed():
    first = train(dataset=toy_dataset(), model_config=TINY, train_config=quick())
    second = train(dataset=toy_dataset(), model_config=TINY, train_config=quick())
    assert first.loss_history == second.loss_history
    assert first.device == "cpu" and first.model.config.return_scale > 0
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.trains
def test_training_records_the_device_dtype_and_optimiser_pace():
    result = train(dataset=toy_dataset(), model_config=TINY, train_config=quick())
    # the default: bfloat16 autocast where the CPU has bfloat16 matrix units, float32 elsewhere
    expected = "bfloat16 autocast" if cpu_has_bfloat16_units() else "float32"
    assert (result.device, result.device_name, result.dtype) == ("cpu", "cpu", expected)
    assert result.optimizer_steps == result.steps_per_epoch * result.epochs_completed
    assert result.steps_per_second > 0


@pytest.mark.trains
def test_cpu_bfloat16_autocast_trains_the_concept_head_deterministically_and_records_it():
    # concept_features > 0: the concept head's blocks (ConceptScores) run in float32 inside the autocast region
    config = DTConfig(state_dim=S, action_dim=A, hidden_dim=16, num_layers=1, num_heads=2, context_length=K,
                      max_timestep=64, concept_features=S // A, concept_head_dim=8)
    plain = train(dataset=toy_dataset(), model_config=config, train_config=quick(epochs=4, cpu_bfloat16=False))
    first = train(dataset=toy_dataset(), model_config=config, train_config=quick(epochs=4, cpu_bfloat16=True))
    second = train(dataset=toy_dataset(), model_config=config, train_config=quick(epochs=4, cpu_bfloat16=True))
    assert (first.dtype, plain.dtype) == ("bfloat16 autocast", "float32")
    assert first.loss_history == second.loss_history  # still deterministic for a seed
    assert all(math.isfinite(x) for x in first.loss_history) and first.loss_history[-1] < first.loss_history[0]
    assert first.loss_history != plain.loss_history  # the forward pass really ran in bfloat16
    assert abs(first.loss_history[-1] - plain.loss_history[-1]) < 0.1 * plain.loss_history[-1]
    assert all(v.dtype == torch.float32 for v in first.model.state_dict().values() if v.is_floating_point())


def test_a_gpu_is_named_and_trains_in_bfloat16_autocast(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Fake GPU")
    assert (device_name("cuda"), training_dtype("cuda")) == ("NVIDIA Fake GPU", "bfloat16 autocast")
    assert (device_name("cpu"), training_dtype("cpu")) == ("cpu", "float32")
    assert training_dtype("cpu", cpu_bfloat16=True) == "bfloat16 autocast"
    assert training_dtype("cuda", cpu_bfloat16=False) == "bfloat16 autocast"  # the flag is the CPU's only


@pytest.mark.parametrize("units", [True, False])
def test_the_cpu_default_is_bfloat16_autocast_where_the_cpu_has_bfloat16_matrix_units(monkeypatch, units):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: units)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert cpu_has_bfloat16_units() is units
    assert training_dtype("cpu", cpu_bfloat16=None) == ("bfloat16 autocast" if units else "float32")
    assert training_dtype("cpu", cpu_bfloat16=False) == "float32"
    assert isinstance(training_autocast("cpu", cpu_bfloat16=None), torch.autocast) is units
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a PyTorch without the check: float32
    assert cpu_has_bfloat16_units() is False


def test_the_constant_schedule_is_the_original_linear_warm_up_then_one():
    factor = learning_rate_factor(TrainConfig(), warmup=10, total=100)
    assert [factor(s) for s in (0, 4, 9, 10, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0]


def test_the_cosine_schedule_warms_up_then_decays_by_half_a_cosine_to_the_floor():
    factor = learning_rate_factor(TrainConfig(lr_schedule="cosine", min_lr_ratio=0.1), warmup=10, total=110)
    assert [factor(s) for s in (0, 4)] == [0.1, 0.5]
    assert factor(9) == pytest.approx(1.0) and factor(109) == pytest.approx(0.1)
    assert factor(59) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay: the cosine's middle
    after = [factor(s) for s in range(9, 110)]
    assert all(a > b for a, b in zip(after, after[1:]))


def test_an_unknown_learning_rate_schedule_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="lr_schedule: expected one of constant, cosine, got 'step'"):
        train(dataset=toy_dataset(), model_config=TINY, train_config=quick(lr_schedule="step"))


@pytest.mark.trains
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resuming_from_the_epoch_checkpoint_equals_training_straight(tmp_path, schedule):
    straight = train(dataset=toy_dataset(), model_config=TINY, train_config=quick(epochs=2, lr_schedule=schedule))
    path = tmp_path / "dt_model.pt"
    # the first epoch of the two-epoch run, stopped after it: the cosine's length is the whole run's
    with pytest.raises(TrainingCancelled):
        train(dataset=toy_dataset(), model_config=TINY, train_config=quick(epochs=2, lr_schedule=schedule),
              checkpoint_path=path, should_stop=_after_steps(3))  # 24 windows of 8: 3 steps an epoch
    resumed = train(dataset=toy_dataset(), model_config=TINY, train_config=quick(epochs=2, lr_schedule=schedule),
                    checkpoint_path=path)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_completed == 2
    assert resumed.loss_history == straight.loss_history
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.trains
def test_epoch_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "dt_model.pt"
    train(dataset=toy_dataset(), model_config=TINY, train_config=quick(epochs=1), checkpoint_path=path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["epoch"] == 1 and len(checkpoint["loss_history"]) == 1
    assert {"model", "config", "optimizer", "scheduler", "rng", "target_return"} <= set(checkpoint)
    assert all(isinstance(v, torch.Tensor) for v in checkpoint["rng"].values())


@pytest.mark.trains
def test_resume_refuses_a_checkpoint_for_other_data(tmp_path):
    path = tmp_path / "dt_model.pt"
    train(dataset=toy_dataset(), model_config=TINY, train_config=quick(epochs=1), checkpoint_path=path)
    with pytest.raises(ValueError, match="different dataset"):
        train(dataset=toy_dataset(seed=1), model_config=TINY, train_config=quick(), checkpoint_path=path)
    restarted = train(dataset=toy_dataset(seed=1), model_config=TINY, train_config=quick(epochs=1),
                      checkpoint_path=path, resume=False)
    assert restarted.resumed_from_epoch == 0


@pytest.mark.trains
def test_cancellation_stops_at_the_next_step_without_a_checkpoint(tmp_path):
    path = tmp_path / "dt_model.pt"
    polls, steps = [], []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(TrainingCancelled, match="epoch 1, step 3"):
        train(dataset=toy_dataset(), model_config=TINY, train_config=quick(progress_every=1),
              checkpoint_path=path, should_stop=should_stop, on_progress=lambda *args: steps.append(args))
    assert len(steps) == 2 and not path.exists()


@pytest.mark.trains
def test_progress_reports_epochs_and_steps():
    calls = []
    train(dataset=toy_dataset(), model_config=TINY, train_config=quick(progress_every=2),
          on_progress=lambda *args: calls.append(args))
    assert [c[:4] for c in calls] == [(1, 2, 2, 3), (1, 2, 3, 3), (2, 2, 2, 3), (2, 2, 3, 3)]
    assert all(math.isfinite(c[4]) for c in calls)


def test_default_model_is_the_small_one_with_the_widest_exact_window():
    dataset = toy_dataset()
    config = default_model_config(dataset)
    assert (config.hidden_dim, config.num_layers, config.num_heads) == (64, 2, 2)
    widest = (3 * config.context_length - 2) // config.num_layers + 1  # 30 at context 20
    assert config.attention_window == widest == max_attention_window(context_length=config.context_length,
                                                                     num_layers=2)
    assert default_model_config(dataset, attention_window=None).attention_window == widest
    assert default_model_config(dataset, attention_window=0).attention_window is None  # full attention
    assert default_model_config(dataset, attention_window=7).attention_window == 7
    # the window follows the layers asked for
    assert default_model_config(dataset, num_layers=4, num_heads=4).attention_window == (3 * config.context_length
                                                                                        - 2) // 4 + 1


def test_the_default_size_and_window_are_model_configs_declarations():
    # DTConfig reads its default size from model_config.py, which the web process (the admin's launch form, no
    # PyTorch) reads too: one source for the default model's widest window
    from training.rl import model_config

    defaults = DTConfig(state_dim=S, action_dim=A)
    assert (defaults.hidden_dim, defaults.num_layers, defaults.num_heads, defaults.context_length) == (
        model_config.DEFAULT_HIDDEN_DIM, model_config.DEFAULT_NUM_LAYERS, model_config.DEFAULT_NUM_HEADS,
        model_config.DEFAULT_CONTEXT_LENGTH)
    assert default_model_config(toy_dataset()).attention_window == model_config.DEFAULT_ATTENTION_WINDOW == 30
    widest = model_config.DEFAULT_ATTENTION_WINDOW
    assert [model_config.attention_window_problem(w) for w in (None, 0, 1, widest)] == ["", "", "", ""]
    assert all(model_config.attention_window_problem(w).startswith("expected 0 (full attention) or a window of 1 to "
                                                                    "30 tokens") for w in (-1, widest + 1, 2.5, True))
    assert "1 to 15 tokens" in model_config.attention_window_problem(16, num_layers=4)


@pytest.mark.trains
def test_loss_decreases_on_a_learnable_dataset():
    config = DTConfig(state_dim=S, action_dim=A, hidden_dim=32, num_layers=2, num_heads=2, context_length=K,
                      max_timestep=64, dropout=0.0)
    result = train(dataset=toy_dataset(episodes=30), model_config=config,
                   train_config=quick(epochs=4, windows_per_epoch=160, batch_size=16, learning_rate=3e-3))
    assert result.loss_history[0] > result.final_loss
    assert result.final_loss < 0.7 * math.log(A)


def test_default_model_has_the_concept_head_for_per_concept_states():
    dataset = toy_dataset()
    assert default_model_config(dataset).concept_features == 0  # no encoder: the states' layout is unknown
    dataset.encoder = {"features": ["recall", "elapsed"]}  # S = 8 = 2 features x 4 concepts
    assert default_model_config(dataset).concept_features == 2
    assert default_model_config(dataset, concept_features=0).concept_features == 0
    dataset.encoder = {"features": ["recall", "elapsed", "reviews"]}  # 3 x 4 != 8: not that layout
    assert default_model_config(dataset).concept_features == 0


@pytest.mark.trains
def test_train_and_export_passes_the_model_overrides_to_the_model(tmp_path):
    from training.pipeline import train_and_export

    outcome = train_and_export(dataset=toy_dataset(), output_dir=tmp_path, epochs=1, batch_size=8, seed=1,
                               no_cuda=True, train_config=quick(epochs=1), attention_window=4, dropout=0.0)
    from training.rl.checkpoint import read_checkpoint

    trained = read_checkpoint(tmp_path / "dt_model.pt")["config"]
    assert (outcome.config["attention_window"], trained["attention_window"], trained["dropout"]) == (4, 4, 0.0)
    train_and_export(dataset=toy_dataset(), output_dir=tmp_path / "default", epochs=1, batch_size=8, seed=1,
                     no_cuda=True, train_config=quick(epochs=1))
    default = read_checkpoint(tmp_path / "default" / "dt_model.pt")["config"]
    widest = max_attention_window(context_length=default["context_length"], num_layers=default["num_layers"])
    assert (default.get("attention_window"), default["dropout"]) == (widest, 0.1)
    train_and_export(dataset=toy_dataset(), output_dir=tmp_path / "full", epochs=1, batch_size=8, seed=1,
                     no_cuda=True, train_config=quick(epochs=1), attention_window=0)
    assert read_checkpoint(tmp_path / "full" / "dt_model.pt")["config"].get("attention_window") is None


@pytest.mark.parametrize("window", [-1, 31, 2.5, True])
def test_train_and_export_refuses_a_window_naming_the_flag_and_the_bound(tmp_path, window):
    from training.pipeline import PipelineError, train_and_export

    with pytest.raises(PipelineError, match=r"--attention-window .*: expected 0 \(full attention\) or a window of 1 "
                                            r"to 30 tokens"):
        train_and_export(dataset=toy_dataset(), output_dir=tmp_path, epochs=1, batch_size=8, seed=1, no_cuda=True,
                         train_config=quick(epochs=1), attention_window=window)
    # the bound follows the layers asked for: (3 x 20 - 2) // 4 + 1 = 15
    with pytest.raises(PipelineError, match="a window of 1 to 15 tokens"):
        train_and_export(dataset=toy_dataset(), output_dir=tmp_path, epochs=1, batch_size=8, seed=1, no_cuda=True,
                         train_config=quick(epochs=1), attention_window=16,
                         architecture={"hidden_dim": 32, "num_layers": 4, "num_heads": 2})
