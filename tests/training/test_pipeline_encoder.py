"""The pipeline fits the encoder's FSRS-6 for every source; what it stores round-trips through
dt_lite_config.json and the encoder identity."""
import json

import numpy as np
import pytest

from curriculum.state_specs import StateSpec
from training import pipeline
from training.rl.encoder import EncoderConfig, encoder_identity
from training.rl.simulator import generate_logs


def test_a_synthetic_dataset_is_encoded_with_fsrs6_fitted_to_the_pilot_log(tmp_path):
    dataset = pipeline.build_synthetic_dataset(num_users=150, interactions=60, concepts=4, seed=3)
    stored = dataset.encoder
    assert stored["estimator"] == "fsrs6" and len(stored["fsrs6_parameters"]) == 21
    assert len(stored["fsrs6_same_day_stability"]) == 4 and "fsrs6_same_day_recall" not in stored
    # as written to and read from dt_lite_config.json
    path = tmp_path / "dt_lite_config.json"
    path.write_text(json.dumps({"encoder": stored, "context_length": 20}))
    restored = EncoderConfig.from_dict(json.loads(path.read_text())["encoder"])
    assert restored.to_dict() == stored
    assert restored.fsrs6_parameters == tuple(stored["fsrs6_parameters"])
    identity = encoder_identity(restored, context_length=20)
    assert identity == encoder_identity(EncoderConfig.from_dict(stored), context_length=20)
    assert identity == StateSpec(restored, 20).identity
    assert identity != encoder_identity(EncoderConfig(num_concepts=4), context_length=20)  # not the unfitted one


def test_fit_encoder_uses_the_time_ordered_train_part_only():
    log = generate_logs(num_users=150, interactions=60, num_concepts=4, seed=9)
    fitted = pipeline.fit_encoder(log.chunks(size=1000), num_concepts=4)
    # the later 30% (by time) changed: the fit is the same
    later = log.t >= np.quantile(log.t, 0.75)
    log.correct[later] = ~log.correct[later]
    assert pipeline.fit_encoder(log.chunks(size=1000), num_concepts=4) == fitted
    with pytest.raises(pipeline.PipelineError, match="no reviews"):
        pipeline.fit_encoder(iter(()), num_concepts=4)
