"""The calibration report: time split, first and same-day reviews, the baselines, the JSON shape."""
from __future__ import annotations

import datetime as dt
import io
import json
import math

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from curriculum import services
from curriculum.calibration import calibration_report
from curriculum.reviews.store import record_reviews
from training.rl.encoder import fsrs6

BASE = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
DAY = 86400
W = fsrs6.DEFAULT_PARAMETERS
FACTOR = 0.9 ** (-1 / W[20]) - 1


def review(learner, at_s, correct, grade=None, concept="c0"):
    return {"curriculum": "cal", "learner": learner, "concept": concept, "correct": correct,
            "grade": grade or (3 if correct else 1), "reviewed_at": BASE + dt.timedelta(seconds=at_s)}


@pytest.fixture
def log(make_curriculum):
    """24 reviews (25 less the last), one card per learner. Train (first 70% by time, 16 reviews): 8 learners, a first review then
    one 2 days later (6 of 8 right). Test (8 reviews): learners late0..late2 review 3 times: first, 4 days later,
    then 10 minutes later (same day); the wrong 10-minute one is after a lapse."""
    make_curriculum(key="cal", concepts=2)
    items = []
    for i, ok in enumerate([True, True, False, True, True, False, True, True]):
        items += [review(f"early{i}", i * DAY, True), review(f"early{i}", i * DAY + 2 * DAY, ok)]
    outcomes = [(True, True), (False, False), (True, True)]
    for i, (second, third) in enumerate(outcomes):
        start = 100 * DAY + i * 10 * DAY
        items += [review(f"late{i}", start, True), review(f"late{i}", start + 4 * DAY, second),
                  review(f"late{i}", start + 4 * DAY + 600, third)]
    items.pop()
    record_reviews(items=items)
    return "cal"


def r_after(days, s):
    return (1 + FACTOR * days / s) ** -W[20]


@pytest.mark.django_db
def test_report_has_the_contract_shape(log):
    from curriculum.models import Curriculum

    report = calibration_report(curriculum=Curriculum.objects.get(key=log))

    assert set(report) == {"curriculum", "reviews", "split", "results"}
    assert report["reviews"] == 24 and report["split"]["train_fraction"] == 0.7
    assert report["split"]["test_from"] == (BASE + dt.timedelta(days=100)).isoformat()
    assert set(report["results"]) == {"excluding_same_day", "including_same_day"}
    for section in report["results"].values():
        assert {"n", "model", "avg", "moving_avg", "fsrs6_default"} <= set(section)
        for name in ("model", "avg", "moving_avg", "fsrs6_default"):
            assert {"log_loss", "auc", "rmse_bins"} <= set(section[name])
    assert json.loads(json.dumps(report, allow_nan=False)) == report


@pytest.mark.django_db
def test_first_reviews_are_not_scored_and_same_day_reviews_are_reported_apart(log):
    from curriculum.models import Curriculum

    results = calibration_report(curriculum=Curriculum.objects.get(key=log))["results"]
    # test: 3 first reviews (not scored), 3 four days later, 2 ten minutes later (the third learner's is popped)
    assert results["excluding_same_day"]["n"] == 3
    assert results["including_same_day"]["n"] == 5


@pytest.mark.django_db
def test_baselines_on_the_hand_checked_log(log):
    from curriculum.models import Curriculum

    results = calibration_report(curriculum=Curriculum.objects.get(key=log))["results"]
    ex = results["excluding_same_day"]
    # avg: 14 of the 16 train reviews right; test outcomes right, wrong, right (one learner each: weighted = mean)
    assert ex["avg"]["value"] == pytest.approx(0.875)
    assert ex["avg"]["log_loss"] == pytest.approx(-(2 * math.log(0.875) + math.log(0.125)) / 3)
    # fsrs6_default (and the model: 16 train reviews are too few to fit): R 4 days after a first Good
    p = r_after(4, W[2])
    assert ex["fsrs6_default"]["log_loss"] == pytest.approx(-(2 * math.log(p) + math.log(1 - p)) / 3)
    assert ex["model"]["log_loss"] == pytest.approx(ex["fsrs6_default"]["log_loss"])
    assert ex["model"]["fit"]["fitted"] is False and "512" in ex["model"]["fit"]["reason"]
    # one scored review per learner: AUC undefined for each, RMSE (bins) per learner = |y - p|
    assert ex["avg"]["auc"] is None
    assert ex["avg"]["rmse_bins"] == pytest.approx((0.125 + 0.875 + 0.125) / 3)
    # moving_avg: each learner's average starts at the train mean and moves 10% towards each earlier outcome
    m = 0.875 + 0.1 * (1 - 0.875)  # after the learner's first (right) review
    assert ex["moving_avg"]["log_loss"] == pytest.approx(-(2 * math.log(m) + math.log(1 - m)) / 3)


@pytest.mark.django_db
def test_same_day_reviews_use_the_fitted_table_and_the_default_says_certain(log):
    from curriculum.models import Curriculum

    inc = calibration_report(curriculum=Curriculum.objects.get(key=log))["results"]["including_same_day"]
    # no same-day review in the train part: the model keeps the package's rule (R = 1 within the day) as the default
    assert inc["model"]["fit"]["same_day_recall"] is None
    assert inc["fsrs6_default"]["log_loss"] > 2  # the wrong same-day review was predicted certain (clipped 1e-6)
    assert inc["avg"]["value"] == pytest.approx(0.875)  # the same constant in both sections


@pytest.mark.django_db
def test_a_curriculum_without_reviews_reports_no_scores(make_curriculum):
    report = calibration_report(curriculum=make_curriculum(key="empty"))

    assert report["reviews"] == 0 and report["split"]["test_from"] is None
    assert report["results"]["excluding_same_day"]["n"] == 0
    assert report["results"]["excluding_same_day"]["model"]["log_loss"] is None


@pytest.mark.django_db
def test_the_command_prints_a_table_and_json(log):
    out = io.StringIO()
    call_command("calibration_report", "--curriculum", "cal", stdout=out)
    text = out.getvalue()
    assert "| predictor |" in text and "fsrs6_default" in text and "moving_avg" in text

    out = io.StringIO()
    call_command("calibration_report", "--curriculum", "cal", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["results"]["including_same_day"]["n"] == 5 and printed["curriculum"] == "cal"


@pytest.mark.django_db
@pytest.mark.parametrize("times_s, fraction", [
    ([0.0], 0.7),  # one review: nothing before the cut
    ([5.0] * 12, 0.7),  # every review at one time
    ([i * DAY for i in range(5)], 0.01),  # a small train fraction of a small log
])
def test_a_log_with_an_empty_train_part_reports_with_nothing_fitted(make_curriculum, times_s, fraction):
    from curriculum.models import Curriculum

    make_curriculum(key="cal", concepts=2)
    record_reviews(items=[review(f"u{i}", at, i % 2 == 0, concept=f"c{i % 2}") for i, at in enumerate(times_s)])
    report = calibration_report(curriculum=Curriculum.objects.get(key="cal"), train_fraction=fraction)
    json.dumps(report, allow_nan=False)  # valid JSON
    assert report["reviews"] == len(times_s) and report["split"]["test_from"] is not None
    for section in report["results"].values():
        assert section["model"]["fit"]["fitted"] is False and section["avg"]["log_loss"] is None
    out = io.StringIO()
    call_command("calibration_report", "--curriculum", "cal", "--train-fraction", str(fraction), "--json", stdout=out)
    assert json.loads(out.getvalue())["reviews"] == len(times_s)


@pytest.mark.django_db
def test_reviews_tied_at_the_cut_all_go_to_the_test_part_as_in_the_encoders_fit(make_curriculum):
    """Rounds of reviews sharing one time each: the cut falls inside a round; the report and the encoder's fit
    see the same train part (reviews strictly before the cut), whatever the storage order."""
    from curriculum.models import Curriculum
    from training.rl.encoder import fit_encoder_config, train_part

    make_curriculum(key="cal", concepts=2)
    rounds, learners = 9, 30
    record_reviews(items=[review(f"u{i}", r * 2 * DAY, (i + r) % 3 != 0, concept="c0")
                          for r in range(rounds) for i in range(learners)])
    report = calibration_report(curriculum=Curriculum.objects.get(key="cal"))
    cut_round = int(rounds * learners * 0.7) // learners  # review 189 is in round 6: all of round 6 is tested
    assert report["split"]["test_from"] == (BASE + dt.timedelta(days=2 * cut_round)).isoformat()
    t = np.repeat(np.arange(rounds) * 2.0 * DAY, learners)[::-1].copy()  # stored newest first: order must not matter
    assert train_part(t).size == cut_round * learners == 180
    correct = np.ones(t.size, dtype=bool)
    learner = np.tile(np.arange(learners), rounds)
    _, fit = fit_encoder_config(learner=learner, concept=np.zeros(t.size, int), t=t, correct=correct,
                                grade=np.full(t.size, 3), num_concepts=2)
    assert fit.long_term_reviews == (cut_round - 1) * learners  # every train review but each card's first
    assert report["results"]["excluding_same_day"]["model"]["fit"]["long_term_reviews"] == fit.long_term_reviews


@pytest.mark.django_db
def test_the_command_names_a_bad_train_fraction_once(make_curriculum):
    make_curriculum(key="frac")
    with pytest.raises(CommandError) as info:
        call_command("calibration_report", "--curriculum", "frac", "--train-fraction", "0")
    assert str(info.value) == "--train-fraction: expected a number between 0 and 1, got 0.0"


@pytest.mark.django_db
def test_the_command_names_an_unknown_curriculum():
    with pytest.raises(CommandError, match="--curriculum: no curriculum 'nope'"):
        call_command("calibration_report", "--curriculum", "nope")


@pytest.mark.django_db
def test_a_slice_of_a_real_anki_log_scores_every_predictor():
    """300 rows of a real log (tests/curriculum/fixtures/fsrs-real-slice.csv): too few to fit (defaults, said so)."""
    from pathlib import Path

    from curriculum.reviews.importers.service import import_review_file
    from curriculum.models import Curriculum

    import_review_file(path=Path(__file__).parent / "fixtures" / "fsrs-real-slice.csv", curriculum_key="real", learner="a")
    results = calibration_report(curriculum=Curriculum.objects.get(key="real"))["results"]

    assert 0 < results["excluding_same_day"]["n"] < results["including_same_day"]["n"]
    assert results["excluding_same_day"]["model"]["fit"]["fitted"] is False
    for section in results.values():
        assert all(section[name]["log_loss"] is not None for name in ("model", "avg", "moving_avg", "fsrs6_default"))
