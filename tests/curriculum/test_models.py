"""The data model's invariants live in the database, not only in code."""
import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from curriculum.models import Concept, PolicyModel


@pytest.mark.django_db
def test_migrations_are_complete():
    # Fails (SystemExit) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_database_refuses_two_active_versions_of_one_curriculum(make_curriculum, make_policy):
    curriculum = make_curriculum()
    first, second = make_policy(curriculum), make_policy(curriculum)
    PolicyModel.objects.filter(pk=first.pk).update(status="active")
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyModel.objects.filter(pk=second.pk).update(status="active")
    assert PolicyModel.objects.filter(curriculum=curriculum, status="active").count() == 1


@pytest.mark.django_db
def test_database_allows_one_active_version_per_curriculum(make_curriculum, make_policy):
    a, b = make_curriculum("a"), make_curriculum("b")
    pa, pb = make_policy(a), make_policy(b)
    PolicyModel.objects.filter(pk__in=[pa.pk, pb.pk]).update(status="active")
    assert PolicyModel.objects.filter(status="active").count() == 2


@pytest.mark.django_db
def test_version_numbers_are_unique_per_curriculum(make_curriculum, make_policy):
    curriculum = make_curriculum()
    policy = make_policy(curriculum)
    with pytest.raises(IntegrityError), transaction.atomic():
        PolicyModel.objects.create(curriculum=curriculum, version=policy.version)


@pytest.mark.django_db
def test_concept_positions_are_unique_per_curriculum(make_curriculum):
    curriculum = make_curriculum(concepts=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Concept.objects.create(curriculum=curriculum, key="other", position=0)


@pytest.mark.django_db
def test_database_refuses_a_grade_outside_1_to_4(make_curriculum):
    from curriculum.models import Learner, ReviewLog
    from django.utils import timezone

    curriculum = make_curriculum()
    learner = Learner.objects.create(external_id="u1")
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewLog.objects.create(
            learner=learner, curriculum=curriculum, concept=curriculum.concepts.first(),
            reviewed_at=timezone.now(), correct=True, grade=5,
        )


def test_the_evaluation_protocol_help_says_what_an_empty_protocol_becomes():
    # A newcomer read "empty: those defaults" (200 x 100) and got 54 students x 1,830 reviews on a 610-concept deck:
    # the help names the sizing, with evaluation_protocol's own constants.
    from curriculum.evaluation_protocol import REVIEWS_PER_CONCEPT, SIZED_STUDENT_REVIEWS_CAP, EvaluationProtocol
    from curriculum.models import Curriculum

    text = str(Curriculum._meta.get_field("evaluation_protocol").help_text)
    assert "those defaults" not in text
    assert f"at least {REVIEWS_PER_CONCEPT} per concept" in text and f"{SIZED_STUDENT_REVIEWS_CAP:,}" in text
    default = EvaluationProtocol()
    assert f"({default.students} and {default.interactions} by default)" in text
    sized = default.sized_for(num_concepts=610)
    assert sized.interactions >= REVIEWS_PER_CONCEPT * 610 and sized.students * sized.interactions <= SIZED_STUDENT_REVIEWS_CAP
