"""Per-learner serving state: incremental upkeep equals a rebuild from the full history, whatever the arrival order."""
import datetime as dt
import random
import threading
from pathlib import Path

import pytest
from django.db import connection

from curriculum import learner_state_rebuild, learner_states
from curriculum.learner_states import history, state_from_history
from curriculum.selectors import serving_spec
from curriculum.state_specs import StateSpec
from curriculum.models import LearnerState, ReviewLog
from curriculum.reviews.store import record_reviews
from curriculum.services import promote_policy, register_policy
from training.rl.encoder import EncoderConfig

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def item(learner, concept, minutes, correct=True, **extra):
    return {"curriculum": "demo", "learner": learner, "concept": f"c{concept}", "correct": correct,
            "grade": 3 if correct else 1, "reviewed_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(), **extra}


def expected_data(row: LearnerState) -> tuple[dict, bytes]:
    """What the state row must hold, (data, history_states): the full history folded with the curriculum's current
    spec."""
    spec = serving_spec(curriculum_id=row.curriculum_id)
    state, last = state_from_history(history(learner_id=row.learner_id, curriculum_id=row.curriculum_id), spec=spec)
    return spec.stored(state, last_review=last)


def stored(row: LearnerState) -> tuple[dict, bytes | None]:
    """(data, history_states) as the row holds them."""
    return row.data, None if row.history_states is None else bytes(row.history_states)


def history_reads(monkeypatch, reads: list) -> None:
    """Record in ``reads`` every read of learners' histories (the one reader learner_states uses)."""
    real = learner_states._histories
    monkeypatch.setattr(learner_states, "_histories", lambda **kw: reads.append(kw) or real(**kw))


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def test_in_order_reviews_are_folded_incrementally(demo, monkeypatch):
    rebuilds = []
    history_reads(monkeypatch, rebuilds)
    record_reviews(items=[item("u1", 0, 0)])
    for minute in range(1, 8):
        record_reviews(items=[item("u1", minute % 5, minute, correct=minute % 3 != 0)])
    row = LearnerState.objects.get()
    assert len(rebuilds) == 1  # only the first review, when there was no state yet
    assert stored(row) == expected_data(row)
    assert row.review_count == 8 and row.newest_review_at == T0 + dt.timedelta(minutes=7)


def test_a_late_review_rebuilds_from_the_full_history(demo):
    record_reviews(items=[item("u1", 0, 0), item("u1", 1, 30)])
    record_reviews(items=[item("u1", 2, 10, correct=False)])  # older than the newest applied
    row = LearnerState.objects.get()
    assert stored(row) == expected_data(row)
    assert row.review_count == 3 and row.newest_review_at == T0 + dt.timedelta(minutes=30)


def test_equal_times_are_applied_in_id_order_on_both_paths(demo):
    record_reviews(items=[item("u1", 0, 5)])
    record_reviews(items=[item("u1", 1, 5, correct=False), item("u1", 0, 5)])
    record_reviews(items=[item("u1", 3, 5)])
    row = LearnerState.objects.get()
    assert stored(row) == expected_data(row)


def test_learners_and_curricula_are_kept_apart(demo, make_curriculum):
    make_curriculum("other", concepts=2)
    record_reviews(items=[item("u1", 0, 0), item("u2", 1, 1), {**item("u1", 1, 2), "curriculum": "other"}])
    rows = LearnerState.objects.order_by("learner__external_id", "curriculum__key")
    assert [(r.learner.external_id, r.curriculum.key, r.review_count) for r in rows] == [
        ("u1", "demo", 1), ("u1", "other", 1), ("u2", "demo", 1)]
    for row in rows:
        assert stored(row) == expected_data(row)


def test_reviews_stored_around_record_reviews_are_picked_up_by_the_next_rebuild(demo):
    record_reviews(items=[item("u1", 0, 0)])
    learner = LearnerState.objects.get().learner
    ReviewLog.objects.create(learner=learner, curriculum=demo, concept=demo.concepts.get(key="c1"),
                             reviewed_at=T0 + dt.timedelta(minutes=1), correct=True)  # e.g. a bulk import
    LearnerState.objects.all().delete()
    record_reviews(items=[item("u1", 2, 2)])
    row = LearnerState.objects.get()
    assert row.review_count == 3 and stored(row) == expected_data(row)


def test_the_active_policy_encoding_is_used_and_a_new_one_rebuilds(demo, fake_artifact_dir):
    def policy(tag, **encoder):
        config = {"encoder": EncoderConfig(estimator="halflife", num_concepts=3, **encoder).to_dict(), "context_length": 3}
        return register_policy(curriculum=demo, artifact_dir=fake_artifact_dir(tag), config=config)

    promote_policy(policy=policy("a"), force=True, reason="test")  # not evaluated
    record_reviews(items=[item("u1", 0, 0), item("u1", 4, 1)])  # c4 is outside this policy's 3 concepts
    row = LearnerState.objects.get()
    a = StateSpec(EncoderConfig(estimator="halflife", num_concepts=3), 3)
    assert row.data["encoder_identity"] == a.identity and "encoder" not in row.data
    assert row.data["state"]["steps"] == 1 and row.review_count == 2
    promote_policy(policy=policy("b", growth=2.0), force=True, reason="test")
    record_reviews(items=[item("u1", 1, 2)])
    row.refresh_from_db()
    b = StateSpec(EncoderConfig(estimator="halflife", num_concepts=3, growth=2.0), 3)
    assert row.data["encoder_identity"] == b.identity != a.identity and row.data["state"]["steps"] == 2
    assert stored(row) == expected_data(row)


def test_a_promotion_re_encodes_the_stored_states_for_the_new_versions_encoder(
    demo, fake_artifact_dir, monkeypatch, django_capture_on_commit_callbacks
):
    """Each version has its own fitted encoder: after a promotion the stored states are rebuilt in its encoding
    (by a worker task, enqueued on commit; run here in process), so reads need no rebuild."""
    from curriculum import services, tasks

    sent = []
    monkeypatch.setattr(services, "_enqueue_reencoding", lambda *, curriculum_id: sent.append(curriculum_id))

    def policy(tag, factors):
        encoder = EncoderConfig(estimator="halflife", num_concepts=5, concept_stability=factors)
        return register_policy(curriculum=demo, artifact_dir=fake_artifact_dir(tag),
                               config={"encoder": encoder.to_dict(), "context_length": 4})

    with django_capture_on_commit_callbacks(execute=True):
        promote_policy(policy=policy("a", (1.0, 2.0, 1.0, 1.0, 1.0)), force=True, reason="test")
    record_reviews(items=[item(f"u{i}", c, 10 * c + i) for i in range(5) for c in range(3)])
    assert sent == [demo.pk]
    with django_capture_on_commit_callbacks(execute=True):
        promote_policy(policy=policy("b", (0.5, 1.0, 4.0, 1.0, 1.0)), force=True, reason="test")
    assert sent == [demo.pk, demo.pk]
    spec = serving_spec(curriculum_id=demo.pk)
    assert all(spec.load(row.data, row.history_states) is None for row in LearnerState.objects.all())  # still in v1's encoding

    assert tasks.reencode_learner_states(demo.pk) == 5
    for row in LearnerState.objects.all():
        assert spec.load(row.data, row.history_states) is not None and stored(row) == expected_data(row) and row.review_count == 3
    assert learner_state_rebuild.reencode_states(curriculum_id=demo.pk, batch_size=2) == 0  # nothing left to do


def test_a_broker_that_cannot_be_reached_does_not_undo_a_promotion(
    demo, fake_artifact_dir, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    from crlsite.celery import app

    def unreachable(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_task", unreachable)
    config = {"encoder": EncoderConfig(num_concepts=5).to_dict(), "context_length": 4}
    with django_capture_on_commit_callbacks(execute=True):
        promote_policy(policy=register_policy(curriculum=demo, artifact_dir=fake_artifact_dir("x"), config=config),
                       force=True, reason="test")
    assert demo.policies.get().status == "active"
    assert "could not enqueue curriculum.tasks.reencode_learner_states" in caplog.text


def test_without_a_policy_the_default_encoder_covers_every_concept(demo):
    assert serving_spec(curriculum_id=demo.pk) == StateSpec.default(num_concepts=5)


def test_a_state_stored_under_another_encoder_identity_is_rebuilt_not_read(demo, monkeypatch):
    record_reviews(items=[item("u1", 0, 0), item("u1", 1, 1)])
    row = LearnerState.objects.get()
    spec = serving_spec(curriculum_id=demo.pk)
    assert spec.load(row.data, row.history_states) is not None  # stored in the current encoding: read as is
    # the same numbers, but stamped with another encoding's identity
    LearnerState.objects.filter(pk=row.pk).update(data={**row.data, "encoder_identity": "0" * 64})
    row.refresh_from_db()
    assert spec.load(row.data, row.history_states) is None
    rebuilds = []
    history_reads(monkeypatch, rebuilds)
    record_reviews(items=[item("u1", 2, 2)])  # in order, but the stored state is not this encoding's
    row.refresh_from_db()
    assert len(rebuilds) == 1 and row.data["encoder_identity"] == spec.identity
    assert row.review_count == 3 and stored(row) == expected_data(row)


def test_the_migration_replaces_the_embedded_encoder_with_its_identity(demo, fake_artifact_dir):
    """Migration 0003 on rows in the old format: the policy gets its identity, a state the identity of its dict."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("curriculum.migrations.0004_policy_and_state_encoder_identity")
    encoder = EncoderConfig(estimator="halflife", num_concepts=5, growth=3.0)
    policy = register_policy(curriculum=demo, artifact_dir=fake_artifact_dir("m"),
                             config={"encoder": encoder.to_dict(), "context_length": 4})
    assert policy.encoder_identity == StateSpec(encoder, 4).identity  # filled at registration
    record_reviews(items=[item("u1", 0, 0)])
    row = LearnerState.objects.get()
    old = {"encoder": encoder.to_dict(), "context_length": 4, "last_review": row.data["last_review"],
           "state": row.data["state"]}
    LearnerState.objects.filter(pk=row.pk).update(data=old)
    type(policy).objects.filter(pk=policy.pk).update(encoder_identity="")

    migration.fill_identities(apps, None)

    policy.refresh_from_db()
    row.refresh_from_db()
    spec = StateSpec(encoder, 4)
    assert policy.encoder_identity == spec.identity
    assert row.data == {"encoder_identity": spec.identity, "last_review": old["last_review"], "state": old["state"]}
    assert spec.load(row.data, row.history_states).to_dict(history_states=False) == old["state"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_review_posts_for_one_learner_leave_a_consistent_state(make_curriculum):
    make_curriculum("demo", concepts=5)
    rng = random.Random(7)
    # 6 writers, 5 batches each, times shuffled: many batches are late relative to another writer's
    batches = [[item("u1", rng.randrange(5), rng.randrange(600), correct=rng.random() < 0.7) for _ in range(3)]
               for _ in range(30)]
    errors = []

    def writer(mine):
        try:
            for batch in mine:
                record_reviews(items=batch)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(batches[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    row = LearnerState.objects.get()
    assert row.review_count == 90 == ReviewLog.objects.count()
    assert stored(row) == expected_data(row)
    assert row.newest_review_at == ReviewLog.objects.latest("reviewed_at").reviewed_at


def test_state_rows_are_locked_through_one_helper_only():
    """Every writer of LearnerState rows (the live fold-in and the bulk rebuilds) locks them with
    learner_states.locked_states: one lock order, so two writers never wait on each other in a circle."""
    repo = Path(__file__).resolve().parents[2]
    lock_queries = [
        f"{path.relative_to(repo)}:{number}"
        for folder in ("curriculum", "training")
        for path in sorted((repo / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "LearnerState.objects.select_for_update" in line
    ]
    assert len(lock_queries) == 1 and lock_queries[0].startswith("curriculum/learner_states.py:"), lock_queries
