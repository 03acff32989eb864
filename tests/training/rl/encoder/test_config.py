"""The encoder identity: one hash per encoding, the same in every process and after a JSON round trip."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.rl.encoder import EncoderConfig, encoder_identity

REPO = Path(__file__).resolve().parents[4]
FITTED = EncoderConfig(estimator="halflife", num_concepts=3, growth=5.5, concept_stability=(0.5, 1.0, 2.0))


def test_the_identity_is_the_same_in_another_process():
    child = ("import json, sys; from training.rl.encoder import EncoderConfig, encoder_identity; "
             "print(encoder_identity(EncoderConfig.from_dict(json.loads(sys.argv[1])), context_length=7))")
    out = subprocess.run([sys.executable, "-c", child, json.dumps(FITTED.to_dict())], cwd=REPO, check=True,
                         capture_output=True, text=True, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert out == encoder_identity(FITTED, context_length=7)
    assert len(out) == 64 and set(out) <= set("0123456789abcdef")


def test_the_identity_survives_a_json_round_trip_and_int_floats():
    restored = EncoderConfig.from_dict(json.loads(json.dumps(FITTED.to_dict())))
    assert encoder_identity(restored, context_length=7) == encoder_identity(FITTED, context_length=7)
    as_ints = EncoderConfig(estimator="halflife", num_concepts=3, horizon_s=86400, growth=6)  # JSON written by hand: 86400, not 86400.0
    assert encoder_identity(as_ints, context_length=7) == encoder_identity(EncoderConfig(estimator="halflife", num_concepts=3), context_length=7)


@pytest.mark.parametrize("other", [
    (EncoderConfig(estimator="halflife", num_concepts=3, growth=5.5, concept_stability=(0.5, 1.0, 2.5)), 7),  # one fitted factor
    (EncoderConfig(estimator="halflife", num_concepts=3, growth=5.0, concept_stability=(0.5, 1.0, 2.0)), 7),  # a parameter
    (EncoderConfig(estimator="halflife", num_concepts=3, growth=5.5, concept_stability=(0.5, 1.0, 2.0)), 8),  # the context length
    (FITTED.with_num_concepts(4), 7),  # one more concept
])
def test_any_change_of_the_encoding_changes_the_identity(other):
    config, context_length = other
    assert encoder_identity(config, context_length=context_length) != encoder_identity(FITTED, context_length=7)


def test_the_identity_refuses_a_bad_context_length():
    with pytest.raises(ValueError, match="context_length: expected a positive integer"):
        encoder_identity(FITTED, context_length=0)
