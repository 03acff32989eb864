"""A 1,000-concept deck end to end (import, extract, train tiny, recommend) with memory that stays bounded: the
dataset keeps review rows, not 4 x 1,000 floats per review."""
import datetime as dt
import io
import resource

import numpy as np
import pytest

CONCEPTS = 1000
REVIEWS = 4000


def _fsrs_csv(rng: np.random.Generator) -> bytes:
    """An FSRS-format review log of one learner: REVIEWS reviews of CONCEPTS cards over ~200 days."""
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    seconds = np.sort(rng.uniform(0, 200 * 86400, REVIEWS))
    cards = np.concatenate([np.arange(CONCEPTS), rng.integers(0, CONCEPTS, REVIEWS - CONCEPTS)])
    ratings = rng.choice([1, 2, 3, 4], size=REVIEWS, p=[0.15, 0.1, 0.6, 0.15])
    lines = ["card_id,review_rating,review_time,review_duration"]
    for s, card, rating in zip(seconds, cards, ratings):
        when = (start + dt.timedelta(seconds=float(s))).isoformat()
        lines.append(f"{1700000000000 + int(card)},{rating},{when},5000")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.trains
@pytest.mark.django_db
def test_a_thousand_concept_deck_imports_extracts_trains_and_recommends_with_bounded_memory(tmp_path):
    from curriculum import serving
    from curriculum.models import Curriculum, ReviewLog
    from curriculum.reviews.importers.service import import_review_file
    from curriculum.services import promote_policy, register_policy
    from training.pipeline import build_dataset_from_reviews, train_and_export
    from training.rl.trainer import TrainConfig
    from training.rl.dataset_statistics import dataset_statistics

    import_review_file(fileobj=io.BytesIO(_fsrs_csv(np.random.default_rng(0))), filename="deck.csv",
                       curriculum_key="deck", learner="a")
    curriculum = Curriculum.objects.get(key="deck")
    assert curriculum.concepts.count() == CONCEPTS and ReviewLog.objects.filter(curriculum=curriculum).count() == REVIEWS

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dataset = build_dataset_from_reviews(curriculum=curriculum)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    full_states = REVIEWS * 4 * CONCEPTS * 4  # what storing the states would take: 64 MB here
    assert dataset.stored_states is None and dataset.nbytes < full_states / 50
    assert dataset_statistics(dataset)["storage"]["bytes"] == dataset.nbytes
    assert grown < 200 * 2**20, f"extraction grew the peak RSS by {grown / 2**20:.0f} MiB"

    outcome = train_and_export(dataset=dataset, output_dir=tmp_path, epochs=1, batch_size=8, seed=1, no_cuda=True,
                               train_config=TrainConfig(windows_per_epoch=16, learning_rate=3e-4))
    assert outcome.config["state_token"] == "summary" and outcome.config["action_dim"] == CONCEPTS
    assert np.isfinite(outcome.final_loss)
    promote_policy(policy=register_policy(curriculum=curriculum, artifact_dir=tmp_path, config=outcome.config),
                   force=True, reason="scale round trip: serving, not the evaluation gate, is under test")
    rec = serving.recommend(curriculum="deck", learner="a", at=dt.datetime(2024, 8, 1, tzinfo=dt.timezone.utc))
    assert rec.strategy == "policy" and len(rec.scores) == CONCEPTS and rec.concept in rec.scores
