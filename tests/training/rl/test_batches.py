"""The batch builder on the training device: the same batches as the NumPy reference (trainer.sample_windows) for a
seed, states equal to the dataset's own per-row encoding, and the same loss curve when training with it."""
import numpy as np
import pytest
import torch

from training.rl.batches import BatchBuilder, draw_window_ends
from training.rl.dt import DTConfig
from training.rl.encoder import EncoderConfig
from training.rl.simulator import generate_logs
from training.rl.trainer import TrainConfig, sample_windows, train
from training.rl.trajectories import TrajectoryDataset, trajectories_from_columns

C, K = 7, 10
ENCODERS = {
    "fsrs6 default": EncoderConfig(num_concepts=C),
    "fsrs6 same-day stability": EncoderConfig(num_concepts=C, fsrs6_same_day_stability=(0.05, 0.2, 0.6, 1.5)),
    "fsrs6 same-day recall": EncoderConfig(num_concepts=C, fsrs6_same_day_recall=(0.6, 0.8, 0.9, 0.95)),
    "halflife": EncoderConfig(num_concepts=C, estimator="halflife"),
    # per-concept recall exponents (R ** k_c), as fitted encoders have
    "fsrs6 concept exponents": EncoderConfig(num_concepts=C, fsrs6_same_day_stability=(0.05, 0.2, 0.6, 1.5),
                                             concept_recall_exponent=(0.4, 0.8, 1.0, 1.3, 2.0, 3.5, 0.6)),
}


@pytest.fixture(scope="module")
def log():
    return generate_logs(num_users=9, interactions=60, num_concepts=C, seed=4)


def assert_same_batch(reference: dict[str, np.ndarray], built: dict[str, torch.Tensor]) -> None:
    assert set(built) == set(reference)
    for name, expected in reference.items():
        got = built[name].cpu().numpy()
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("encoder", list(ENCODERS), ids=list(ENCODERS))
@pytest.mark.parametrize("snapshot_every", [1, 5, 128])
@pytest.mark.parametrize("compact", [True, False], ids=["reviewed cells", "whole grid"])
def test_the_builder_gives_the_reference_batch_for_the_same_draw(log, encoder, snapshot_every, compact):
    ds = trajectories_from_columns(log, encoder=ENCODERS[encoder], snapshot_every=snapshot_every)
    builder = BatchBuilder(ds, context_length=K)
    builder.review_states.compact = compact
    builder.zero_by_index = compact  # "whole grid" runs CUDA's paths on the CPU: masked fill, same-day rule everywhere
    for seed in range(3):
        reference = sample_windows(ds, rng=np.random.default_rng(seed), batch_size=32, context_length=K)
        ends = draw_window_ends(np.random.default_rng(seed), num_steps=len(ds.actions), batch_size=32)
        assert_same_batch(reference, builder.batch(ends))


@pytest.mark.parametrize("compact", [True, False], ids=["reviewed cells", "whole grid"])
def test_reusing_the_states_tensor_gives_the_same_batches_and_the_next_call_overwrites_it(log, compact):
    ds = trajectories_from_columns(log, encoder=ENCODERS["fsrs6 same-day stability"], snapshot_every=5)
    fresh, reused = BatchBuilder(ds, context_length=K), BatchBuilder(ds, context_length=K, reuse_states=True)
    fresh.review_states.compact = reused.review_states.compact = compact
    previous = None
    for seed in range(3):
        ends = draw_window_ends(np.random.default_rng(seed), num_steps=len(ds.actions), batch_size=32)
        expected, got = fresh.batch(ends), reused.batch(ends)
        assert_same_batch({k: v.numpy() for k, v in expected.items()}, got)
        if previous is not None and compact:  # the reviewed-cells path writes into the one kept tensor
            assert previous["states"].data_ptr() == got["states"].data_ptr()
            assert torch.equal(previous["states"], got["states"])  # the earlier batch's states are this one's now
        previous = got


@pytest.mark.parametrize("compact", [True, False], ids=["reviewed cells", "whole grid"])
def test_the_builders_states_equal_the_datasets_own_per_row_states(log, compact):
    ds = trajectories_from_columns(log, encoder=ENCODERS["fsrs6 same-day stability"], snapshot_every=4)
    builder = BatchBuilder(ds, context_length=K)
    builder.review_states.compact = compact
    rows = torch.arange(len(ds.actions))
    np.testing.assert_allclose(builder.review_states.states(rows).numpy(), ds.states, rtol=0, atol=1e-6)
    # the dataset's rows one at a time, as the per-sample path reads them
    for row in np.random.default_rng(0).integers(0, len(ds.actions), size=20):
        np.testing.assert_allclose(builder.review_states.states(torch.tensor([row])).numpy()[0],
                                   ds.state_rows(np.array([row]))[0], rtol=0, atol=1e-6)


def test_a_dataset_holding_its_states_is_gathered_from_them():
    rng = np.random.default_rng(0)
    starts = np.array([0, 4, 4 + 13, 30])
    n = int(starts[-1])
    ds = TrajectoryDataset(states=rng.random((n, 8), dtype=np.float32), actions=rng.integers(0, 2, n),
                           rewards=rng.random(n, dtype=np.float32), returns_to_go=rng.random(n, dtype=np.float32),
                           timesteps=np.concatenate([np.arange(b - a) for a, b in zip(starts[:-1], starts[1:])]),
                           episode_starts=starts)
    reference = sample_windows(ds, rng=np.random.default_rng(3), batch_size=16, context_length=K)
    built = BatchBuilder(ds, context_length=K).batch(draw_window_ends(np.random.default_rng(3), num_steps=n,
                                                                      batch_size=16))
    assert_same_batch(reference, built)
    assert (built["attention_mask"] == 0).any()  # some windows are left-padded: the test covers the padding


@pytest.mark.trains
def test_training_with_the_builder_gives_the_reference_loss_curve(log):
    ds = trajectories_from_columns(log, encoder=ENCODERS["fsrs6 default"], snapshot_every=8)
    model = DTConfig(state_dim=ds.state_dim, action_dim=C, hidden_dim=16, num_layers=1, num_heads=2,
                     context_length=K, max_timestep=64)
    runs = {name: train(dataset=ds, model_config=model,
                        train_config=TrainConfig(epochs=3, batch_size=8, windows_per_epoch=64, no_cuda=True,
                                                 batch_builder=name))
            for name in ("device", "numpy")}
    assert len(runs["device"].loss_history) == 3
    np.testing.assert_allclose(runs["device"].loss_history, runs["numpy"].loss_history, rtol=1e-5)
    assert runs["device"].loss_history[-1] < runs["device"].loss_history[0]


def test_an_unknown_batch_builder_is_refused_naming_the_field(log):
    ds = trajectories_from_columns(log, encoder=ENCODERS["fsrs6 default"])
    with pytest.raises(ValueError, match="train_config.batch_builder"):
        train(dataset=ds, train_config=TrainConfig(epochs=1, batch_builder="gpu"))
