"""The calibration report of a curriculum's log: time split, first reviews left out, both predictors scored."""
from __future__ import annotations

import datetime as dt
import io
import json
import math

import pytest
from django.core.management import CommandError, call_command

from curriculum import services
from curriculum.calibration import calibration_report
from training.rl.encoder import EncoderConfig

BASE = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
HALF_LIFE = EncoderConfig(num_concepts=1).initial_stability_s[2]  # the default half-life after a first review graded 3
DAY = 86400


def pair(learner: str, start_s: float, gap_s: float, second_correct: bool) -> list[dict]:
    """A first review graded 3 and a second one gap_s later: the encoder predicts 2 ** (-gap_s / HALF_LIFE)."""
    return [
        {"curriculum": "cal", "learner": learner, "concept": "c0", "correct": True, "grade": 3,
         "reviewed_at": BASE + dt.timedelta(seconds=start_s)},
        {"curriculum": "cal", "learner": learner, "concept": "c0", "correct": second_correct,
         "grade": 3 if second_correct else 1, "reviewed_at": BASE + dt.timedelta(seconds=start_s + gap_s)},
    ]


@pytest.fixture
def log(make_curriculum):
    """20 reviews: 7 early pairs (the first 70% by time: train), 3 late pairs (test), one pair per learner."""
    curriculum = make_curriculum(key="cal", concepts=2)
    items = []
    for i, correct in enumerate([True, True, False, True, True, False, True]):  # train repeats: 5 of 7 right
        items += pair(f"early{i}", i * 10 * DAY, HALF_LIFE, correct)
    for i, (gap, correct) in enumerate([(HALF_LIFE, True), (2 * HALF_LIFE, False), (HALF_LIFE / 2, True)]):
        items += pair(f"late{i}", 100 * DAY + i * 10 * DAY, gap, correct)
    services.record_reviews(items=items)
    return curriculum


@pytest.mark.django_db
def test_report_scores_the_encoder_and_the_train_average_on_the_test_reviews(log):
    report = calibration_report(curriculum=log)

    assert report["reviews"] == 20
    assert report["split"]["train_reviews"] == 14 and report["split"]["test_reviews"] == 6
    assert report["evaluated"] == {"train": 7, "test": 3, "first_reviews_excluded": 10}
    assert report["train_mean_recall"] == pytest.approx(5 / 7)
    encoder, constant = report["predictors"]["encoder"], report["predictors"]["constant"]
    # test: p = .5 (right), .25 (wrong), 2 ** -.5 (right)
    assert encoder["log_loss"] == pytest.approx(-(math.log(0.5) + math.log(0.75) + math.log(2**-0.5)) / 3)
    assert encoder["auc"] == pytest.approx(1.0)
    assert constant["log_loss"] == pytest.approx(-(2 * math.log(5 / 7) + math.log(2 / 7)) / 3)
    assert constant["auc"] == pytest.approx(0.5)
    assert encoder["log_loss"] < constant["log_loss"]


@pytest.mark.django_db
def test_report_shape_is_json_ready(log):
    report = calibration_report(curriculum=log, bins=10)

    assert set(report) == {"curriculum", "reviews", "split", "evaluated", "train_mean_recall", "predictors", "bins", "encoder"}
    assert len(report["bins"]) == 10 and sum(b["count"] for b in report["bins"]) == 3
    assert report["encoder"]["source"] == "default" and report["encoder"]["config"]["num_concepts"] == 2
    assert json.loads(json.dumps(report, allow_nan=False)) == report


@pytest.mark.django_db
def test_a_curriculum_without_reviews_reports_no_predictors(make_curriculum):
    report = calibration_report(curriculum=make_curriculum(key="empty"))

    assert report["reviews"] == 0 and report["predictors"] == {} and report["train_mean_recall"] is None


@pytest.mark.django_db
def test_the_command_prints_a_table_and_json(log):
    out = io.StringIO()
    call_command("calibration_report", "--curriculum", "cal", stdout=out)
    text = out.getvalue()
    assert "encoder" in text and "constant" in text and "The encoder beats the constant predictor (0.7143)" in text

    out = io.StringIO()
    call_command("calibration_report", "--curriculum", "cal", "--json", stdout=out)
    assert json.loads(out.getvalue())["evaluated"]["test"] == 3


@pytest.mark.django_db
def test_the_command_names_an_unknown_curriculum():
    with pytest.raises(CommandError, match="--curriculum: no curriculum 'nope'"):
        call_command("calibration_report", "--curriculum", "nope")


@pytest.mark.django_db
@pytest.mark.slow
def test_on_an_imported_synthetic_log_the_encoder_beats_the_average_recall(tmp_path):
    from curriculum.importers import import_review_file
    from curriculum.models import Curriculum
    from training.rl.simulator import generate_logs

    log = generate_logs(num_users=40, interactions=80, num_concepts=10, seed=11)
    for learner in range(40):
        rows = log.learner == learner
        path = tmp_path / f"learner{learner}.csv"
        lines = ["card_id,review_time,review_rating,review_duration"] + [
            f"concept{c},{round(t * 1000)},{g},{ms}"
            for c, t, g, ms in zip(log.concept[rows], log.t[rows], log.grade[rows], log.response_time_ms[rows])
        ]
        path.write_text("\n".join(lines) + "\n")
        import_review_file(path=path, curriculum_key="synthetic", learner=f"sim{learner}")

    report = calibration_report(curriculum=Curriculum.objects.get(key="synthetic"))

    assert report["reviews"] == 40 * 80 and report["evaluated"]["test"] > 500
    encoder, constant = report["predictors"]["encoder"], report["predictors"]["constant"]
    assert encoder["log_loss"] < constant["log_loss"] and encoder["auc"] > 0.7


@pytest.mark.django_db
def test_the_report_uses_the_active_policys_encoder(log, fake_artifact_dir):
    encoder = EncoderConfig(num_concepts=2, initial_stability_s=(600.0, 900.0, 1200.0, 1800.0))
    policy = services.register_policy(
        curriculum=log, artifact_dir=fake_artifact_dir("enc"), config={"encoder": encoder.to_dict(), "context_length": 20},
    )
    services.promote_policy(policy=policy, reason="test")

    report = calibration_report(curriculum=log)

    assert report["encoder"]["source"] == "active policy v1"
    assert report["encoder"]["config"]["initial_stability_s"] == [600.0, 900.0, 1200.0, 1800.0]
    # a half-life of 1200 s: the test reviews, 0.5, 1 and 2 default half-lives later, are predicted much lower
    assert report["predictors"]["encoder"]["mean_predicted"] < 0.1


@pytest.mark.django_db
def test_a_fitted_encoder_for_fewer_concepts_keeps_its_factors_and_leaves_new_concepts_unfitted(log, fake_artifact_dir):
    """The policy knew one concept (c0, fitted: its first memory lasts 1/40 of the median's); the curriculum has
    two now. The report covers both, with c0's factor: a first half-life of ~1.8 h, so the later reviews, days
    apart, are predicted near 0."""
    encoder = EncoderConfig(num_concepts=1, concept_stability=(0.025,))
    policy = services.register_policy(
        curriculum=log, artifact_dir=fake_artifact_dir("fit"), config={"encoder": encoder.to_dict(), "context_length": 20},
    )
    services.promote_policy(policy=policy, reason="test")

    report = calibration_report(curriculum=log)

    assert report["encoder"]["config"]["num_concepts"] == 2
    assert report["encoder"]["config"]["concept_stability"] == [0.025, 1.0]
    assert report["predictors"]["encoder"]["mean_predicted"] < 0.01
