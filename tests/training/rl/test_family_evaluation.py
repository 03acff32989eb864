"""Evaluation per student family: the JSON shape, paired differences and the gap closed on a tiny fixed
evaluation, the text table, and the errors a user can cause."""
import json

import numpy as np
import pytest

from training.rl.evaluation import (BASELINES, EXTRA_BASELINES, FAMILY_SUMMARY_KEYS, behaviour_references, evaluate,
                                    family_block, format_report, gap_closed)
from training.rl.simulator import StudentsLike
from training.rl.encoder import fsrs6

from .test_evaluation import C, LowestRecallModel


def _evaluate(**kwargs):
    return evaluate(**({"num_concepts": C, "students": 12, "interactions": 15, "seed": 5} | kwargs))


def test_paired_differences_and_gap_closed_on_fixed_final_recalls():
    values = {
        "dt": np.array([0.6, 0.7, 0.8]),
        "lowest_recall": np.array([0.5, 0.6, 0.6]),
        "oracle": np.array([0.8, 0.9, 0.9]),
        "target_recall": np.array([0.55, 0.7, 0.75]),
    }
    block = family_block(values, references=("target_recall",))
    # dt - lowest_recall per student: 0.1, 0.1, 0.2 -> mean 0.1333, sample std 0.0577, half width 1.96 * std / sqrt 3
    d = block["paired"]["lowest_recall"]
    assert d["mean"] == pytest.approx(0.4 / 3)
    half = 1.96 * np.std([0.1, 0.1, 0.2], ddof=1) / np.sqrt(3)
    assert d["ci95"] == pytest.approx([0.4 / 3 - half, 0.4 / 3 + half])
    assert block["paired"]["target_recall"]["mean"] == pytest.approx(0.1 / 3)
    # gap closed: (0.7 - 0.5667) / (0.8667 - 0.5667) = 0.4444
    assert block["gap_closed"] == pytest.approx((0.7 - 1.7 / 3) / (2.6 / 3 - 1.7 / 3))
    assert block["best_behaviour"] == "target_recall"
    assert "dt" not in block["paired"]


def test_gap_closed_is_none_where_the_oracle_is_no_ceiling():
    assert gap_closed(dt=0.5, lowest_recall=0.6, oracle=0.55) is None
    assert gap_closed(dt=0.5, lowest_recall=0.4, oracle=0.6) == pytest.approx(0.5)
    # an oracle below another baseline bounds nothing either (a large deck's students: -768% was printed)
    assert gap_closed(dt=0.5, lowest_recall=0.4, oracle=0.6, others=(0.3, 0.65)) is None
    assert gap_closed(dt=0.5, lowest_recall=0.4, oracle=0.6, others=(0.3, 0.55)) == pytest.approx(0.5)
    block = family_block({"dt": np.array([0.5, 0.5]), "lowest_recall": np.array([0.4, 0.4]),
                          "oracle": np.array([0.6, 0.6]), "round_robin": np.array([0.7, 0.7])}, references=())
    assert block["gap_closed"] is None


def test_behaviour_references_strip_noise_and_variation():
    assert behaviour_references() == ("random", "leitner", "target_recall")
    assert behaviour_references({"noisy_lowest_recall": 1.0}) == ("lowest_recall",)


def test_family_evaluation_has_the_documented_json_shape():
    result = json.loads(json.dumps(_evaluate(policy=LowestRecallModel(), families="builtin,actr,hlr,fsrs6")))
    assert set(result) == {"metric", "students", "seed", "results", "families"}
    assert list(result["families"]) == ["builtin", "actr", "hlr", "fsrs6"]
    assert list(result["results"]) == ["dt", *BASELINES, *EXTRA_BASELINES]
    for name, block in result["families"].items():
        policies = [key for key in block if key not in FAMILY_SUMMARY_KEYS]
        assert policies == ["dt", *BASELINES, *EXTRA_BASELINES, "target_recall"], name
        assert set(block["paired"]) == set(policies) - {"dt"}
        for entry in [*(block[p] for p in policies), *block["paired"].values()]:
            assert set(entry) == {"mean", "ci95"} and entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
        assert block["best_behaviour"] in ("random", "leitner", "target_recall")
        assert block["gap_closed"] is None or isinstance(block["gap_closed"], float)
    # "results" is the built-in family's figures, computed once
    assert result["results"]["dt"] == result["families"]["builtin"]["dt"]
    # the stand-in is lowest_recall itself: paired, the difference is exactly 0 on every family
    for block in result["families"].values():
        assert block["paired"]["lowest_recall"] == {"mean": 0.0, "ci95": [0.0, 0.0]}


def test_the_default_evaluation_adds_no_families_and_keeps_its_numbers():
    plain = _evaluate(policy=LowestRecallModel())
    with_families = _evaluate(policy=LowestRecallModel(), families="actr")
    assert "families" not in plain
    assert with_families["results"] == plain["results"]


def test_format_report_has_a_row_per_family_and_policy():
    text = format_report(_evaluate(policy=LowestRecallModel(), families="builtin,hlr"))
    assert "| builtin | dt |" in text and "| hlr | oracle |" in text
    assert "- hlr: gap closed" in text
    assert format_report(_evaluate()) == ""


def test_unknown_or_unfitted_families_are_refused_by_name():
    with pytest.raises(ValueError, match="families: unknown student family 'ebbinghaus'"):
        _evaluate(families="builtin,ebbinghaus")
    with pytest.raises(ValueError, match="'fitted' needs"):
        _evaluate(families="fitted")
    like = StudentsLike(parameters=fsrs6.DEFAULT_PARAMETERS)
    result = _evaluate(families="fitted", students_like=like)
    assert result["families"]["fitted"]["oracle"] == result["students_like"]["oracle"]
