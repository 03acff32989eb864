"""Serving scores a concept added to the curriculum after the active policy was trained, from its features, when
the policy's model can (summary state token + concept head); older policies leave such concepts to the fallback."""
import datetime as dt
import json

import pytest

from curriculum import serving
from curriculum.models import LearnerState
from curriculum.reviews.store import record_reviews
from curriculum.services import promote_policy, register_policy

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
TRAINED = 4


def _export(folder, *, state_token: str):
    import torch

    from training.rl.checkpoint import export_artifacts
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.encoder import EncoderConfig

    encoder = EncoderConfig(num_concepts=TRAINED)
    torch.manual_seed(0)
    model = DecisionTransformer(DTConfig(
        state_dim=encoder.state_dim, action_dim=TRAINED, hidden_dim=16, num_layers=1, num_heads=2, context_length=4,
        max_timestep=64, dropout=0.0, concept_features=4, concept_head_dim=8, state_token=state_token,
    )).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)
    export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i}" for i in range(TRAINED)],
                     encoder=encoder.to_dict(), target_return=1.0)
    return folder


def _serve(curriculum, folder):
    config = json.loads((folder / "dt_lite_config.json").read_text())
    promote_policy(policy=register_policy(curriculum=curriculum, artifact_dir=folder, config=config),
                   reason="untrained weights for a serving test", force=True)


def _review(concept: str, minutes: int) -> dict:
    return {"curriculum": "demo", "learner": "u1", "concept": concept, "correct": True,
            "reviewed_at": (T0 + dt.timedelta(minutes=minutes)).isoformat()}


@pytest.mark.django_db
def test_a_concept_added_after_training_is_scored_by_the_policy_from_the_stored_state(make_curriculum, tmp_path):
    demo = make_curriculum("demo", concepts=TRAINED)
    _serve(demo, _export(tmp_path / "summary", state_token="summary"))
    make_curriculum("demo", concepts=TRAINED + 2)  # c4, c5 added after training
    record_reviews(items=[_review("c0", 0), _review("c4", 1), _review("c1", 2)])

    stored = LearnerState.objects.get(learner__external_id="u1").data["state"]
    assert stored["num_concepts"] == TRAINED + 2  # the stored state encodes the added concepts too

    rec = serving.recommend(curriculum="demo", learner="u1", at=T0 + dt.timedelta(hours=1))
    assert rec.strategy == "policy"
    assert set(rec.scores) == {f"c{i}" for i in range(TRAINED + 2)}
    assert sum(rec.scores.values()) == pytest.approx(1.0, abs=1e-4)
    only_new = serving.recommend(curriculum="demo", learner="u1", candidates=["c4", "c5"], at=T0)
    assert only_new.strategy == "policy" and only_new.concept in {"c4", "c5"}
    # the added concept's score depends on its features: reviewing c5 changes how the policy scores it
    record_reviews(items=[_review("c5", 3)])
    after = serving.recommend(curriculum="demo", learner="u1", candidates=["c4", "c5"], at=T0)
    assert after.scores != only_new.scores


@pytest.mark.django_db
def test_a_linear_token_policy_leaves_added_concepts_to_the_fallback(make_curriculum, tmp_path):
    demo = make_curriculum("demo", concepts=TRAINED)
    _serve(demo, _export(tmp_path / "linear", state_token="linear"))
    make_curriculum("demo", concepts=TRAINED + 1)
    record_reviews(items=[_review("c0", 0), _review("c4", 1)])
    assert LearnerState.objects.get(learner__external_id="u1").data["state"]["num_concepts"] == TRAINED
    assert serving.recommend(curriculum="demo", learner="u1", at=T0).scores.keys() == {f"c{i}" for i in range(TRAINED)}
    rec = serving.recommend(curriculum="demo", learner="u1", candidates=["c4"], at=T0)
    assert rec.strategy == "fallback:lowest_recall" and rec.concept == "c4"


@pytest.mark.django_db
@pytest.mark.parametrize("state_token", ["summary", "linear"])
def test_coverage_on_every_page_agrees_with_what_serving_scores(make_curriculum, make_policy, tmp_path, admin_client,
                                                                 state_token):
    from django.urls import reverse

    from curriculum import selectors

    demo = make_curriculum("demo", concepts=TRAINED)
    _serve(demo, _export(tmp_path / state_token, state_token=state_token))
    make_curriculum("demo", concepts=TRAINED + 2)  # c4, c5 added after training
    rec = serving.recommend(curriculum="demo", learner="u1", at=T0)
    uncovered = selectors.uncovered_concepts(curriculum=demo)
    assert uncovered == list(rec.unscored)  # what the pages say is what the API answers
    coverage = selectors.policy_coverage(curriculum=demo, policy=selectors.active_policy(curriculum=demo))
    assert coverage.trained == TRAINED and coverage.concept_count == TRAINED + 2

    orchestrator = admin_client.get(reverse("curriculum:orchestrator")).content.decode()
    curriculum_page = admin_client.get(reverse("admin:curriculum_curriculum_change", args=[demo.pk])).content.decode()
    candidate = make_policy(demo)
    confirm = admin_client.get(reverse("curriculum:orchestrator-promote", args=[candidate.pk])).content.decode()
    if state_token == "summary":
        assert uncovered == [] and coverage.from_features == ("c4", "c5")
        assert "cannot score" not in orchestrator and 'id="uncovered-demo"' not in orchestrator
        assert "scored from their features, not trained on" in orchestrator
        assert "scored from their features, not trained on" in curriculum_page
        assert "does not cover" not in curriculum_page
        assert "covers all 6 concepts: trained on 4, 2 scored from their features, not trained on (c4, c5)" in confirm
    else:
        assert uncovered == ["c4", "c5"] and coverage.from_features == ()
        assert "cannot score 2 (c4, c5)" in orchestrator
        assert "scored from their features" not in orchestrator
        assert "does not cover 2 of 6 concepts" in curriculum_page
        assert "covers 4 of 6 concepts: it cannot score 2 (c4, c5)" in confirm
