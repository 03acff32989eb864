"""register/promote/rollback: atomic, validated, audited."""
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from curriculum import services
from curriculum.models import PolicyModel, PromotionEvent

# ----------------------------------------------------------------------------------------------- registry
@pytest.mark.django_db
def test_register_numbers_versions_per_curriculum_and_records_sha256(make_curriculum, make_policy):
    a, b = make_curriculum("a"), make_curriculum("b")
    assert [make_policy(a).version, make_policy(a).version, make_policy(b).version] == [1, 2, 1]
    policy = PolicyModel.objects.get(curriculum=a, version=2)
    assert policy.status == "candidate"
    assert set(policy.artifacts) == set(services.ARTIFACT_NAMES)
    assert all(len(e["sha256"]) == 64 for e in policy.artifacts.values())


@pytest.mark.django_db
def test_promote_activates_and_demotes_with_an_event(make_curriculum, make_policy):
    user = get_user_model().objects.create_user("op")
    curriculum = make_curriculum()
    v1, v2 = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.6)
    services.promote_policy(policy=v1, actor=user, reason="first")
    event = services.promote_policy(policy=v2, actor=user, reason="better")
    v1.refresh_from_db(), v2.refresh_from_db()
    assert (v1.status, v2.status) == ("retired", "active")
    assert (event.from_version, event.to_version, event.actor, event.reason) == (1, 2, user, "better")
    assert v2.promoted_at is not None


@pytest.mark.django_db
def test_promotion_refuses_a_worse_candidate_unless_forced_with_a_reason(make_curriculum, make_policy):
    curriculum = make_curriculum()
    good, worse = make_policy(curriculum, recall=0.7), make_policy(curriculum, recall=0.6)
    services.promote_policy(policy=good, reason="test")
    with pytest.raises(services.PromotionRefused, match="worse"):
        services.promote_policy(policy=worse, reason="test")
    with pytest.raises(services.PromotionRefused, match="reason"):
        services.promote_policy(policy=worse, force=True)
    assert PolicyModel.objects.get(status="active") == good
    event = services.promote_policy(policy=worse, force=True, reason="drift in live data")
    assert event.forced and PolicyModel.objects.get(status="active") == worse


@pytest.mark.django_db
def test_promotion_refuses_missing_artifact_and_changes_nothing(make_curriculum, make_policy, _artifact_storage):
    curriculum = make_curriculum()
    v1, v2 = make_policy(curriculum), make_policy(curriculum)
    services.promote_policy(policy=v1, reason="test")
    (_artifact_storage / v2.artifacts["dt_lite_weights.npz"]["path"]).unlink()
    with pytest.raises(services.ArtifactIntegrityError, match="dt_lite_weights.npz is missing"):
        services.promote_policy(policy=v2, reason="test")
    assert PolicyModel.objects.get(status="active") == v1
    assert PromotionEvent.objects.count() == 1


@pytest.mark.django_db
def test_promotion_refuses_tampered_artifact_and_changes_nothing(make_curriculum, make_policy, _artifact_storage):
    curriculum = make_curriculum()
    v1 = make_policy(curriculum)
    (_artifact_storage / v1.artifacts["dt_model.pt"]["path"]).write_bytes(b"evil")
    with pytest.raises(services.ArtifactIntegrityError, match="dt_model.pt: SHA-256 mismatch"):
        services.promote_policy(policy=v1, reason="test")
    v1.refresh_from_db()
    assert v1.status == "candidate"
    assert PromotionEvent.objects.count() == 0


@pytest.mark.django_db
def test_rollback_returns_to_the_previous_version(make_curriculum, make_policy):
    curriculum = make_curriculum()
    v1, v2 = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.6)
    services.promote_policy(policy=v1, reason="test")
    services.promote_policy(policy=v2, reason="test")
    event = services.rollback_policy(curriculum=curriculum, reason="complaints")
    assert (event.kind, event.from_version, event.to_version) == ("rollback", 2, 1)
    assert PolicyModel.objects.get(status="active") == v1
    with pytest.raises(services.PromotionRefused, match="no previous version"):
        services.rollback_policy(curriculum=curriculum, reason="test")


@pytest.mark.django_db
def test_rollback_without_active_version_is_refused(make_curriculum):
    with pytest.raises(services.PromotionRefused, match="no active version"):
        services.rollback_policy(curriculum=make_curriculum(), reason="test")


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_end_with_one_active_version_and_two_events(make_curriculum, make_policy):
    curriculum = make_curriculum()
    v1, v2 = make_policy(curriculum, recall=0.5), make_policy(curriculum, recall=0.5)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def promote(policy):
        try:
            barrier.wait(timeout=10)
            services.promote_policy(policy=policy, reason="race")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=promote, args=(p,)) for p in (v1, v2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert PolicyModel.objects.filter(curriculum=curriculum, status="active").count() == 1
    events = list(PromotionEvent.objects.filter(curriculum=curriculum).order_by("id"))
    assert len(events) == 2
    # Serialised: the second event starts from the version the first one activated.
    assert events[1].from_version == events[0].to_version


@pytest.mark.django_db
def test_rolling_back_twice_walks_further_back(make_curriculum, make_policy):
    curriculum = make_curriculum()
    v1, v2, v3 = (make_policy(curriculum, recall=r) for r in (0.5, 0.6, 0.7))
    for policy in (v1, v2, v3):
        services.promote_policy(policy=policy, reason="test")
    services.rollback_policy(curriculum=curriculum, reason="test")
    assert PolicyModel.objects.get(status="active") == v2
    services.rollback_policy(curriculum=curriculum, reason="test")
    assert PolicyModel.objects.get(status="active") == v1
