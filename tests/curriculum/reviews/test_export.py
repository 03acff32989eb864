"""curriculum.reviews.export imported back (docs/importing.md, Export): which reviews come back as they were."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from curriculum.models import Concept, Curriculum, Learner, ReviewLog
from curriculum.reviews.export import fsrs_csv_lines
from curriculum.reviews.importers.service import ImportFileError, import_review_file
from curriculum.reviews.store import record_reviews
from curriculum.services import ensure_concepts

T0 = dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone.utc)
HLR = ("p_recall,timestamp,delta,user_id,learning_language,ui_language,lexeme_id,lexeme_string,history_seen,"
       "history_correct,session_seen,session_correct\n")


def export(curriculum: str, learner: str) -> bytes:
    lines = fsrs_csv_lines(curriculum=Curriculum.objects.get(key=curriculum),
                           learner=Learner.objects.get(external_id=learner))
    return "".join(lines).encode()


def import_back(data: bytes, *, curriculum: str = "logs", learner: str = "ana"):
    return import_review_file(fileobj=io.BytesIO(data), filename="export.csv", curriculum_key=curriculum,
                              learner=learner, format="fsrs")


@pytest.mark.django_db
def test_concept_keys_a_file_rule_would_change_come_back_as_exported(make_curriculum):
    keys = ["2.0", "1,000", " padded", "1.69E+12"]  # keys the API takes: rewritten-looking numbers, a leading space
    curriculum = make_curriculum(key="logs", concepts=0)
    ensure_concepts(curriculum=curriculum, concept_keys=keys)
    record_reviews(items=[{"curriculum": "logs", "learner": "ana", "concept": key, "correct": True, "grade": 3,
                           "reviewed_at": (T0 + dt.timedelta(minutes=i)).isoformat()} for i, key in enumerate(keys)])
    data = export("logs", "ana")

    again = import_back(data)
    other = import_back(data, learner="bob")

    assert (again.created, again.duplicates, again.concepts_created) == (0, 4, 0)
    assert (other.created, other.concepts_created) == (4, 0)
    assert sorted(ReviewLog.objects.filter(learner__external_id="bob").values_list("concept__key", flat=True)) == sorted(keys)
    assert Concept.objects.count() == 4


@pytest.mark.django_db
def test_into_another_curriculum_a_rewritten_looking_key_is_refused_as_in_any_file(make_curriculum):
    curriculum = make_curriculum(key="logs", concepts=0)
    ensure_concepts(curriculum=curriculum, concept_keys=["2.0"])
    record_reviews(items=[{"curriculum": "logs", "learner": "ana", "concept": "2.0", "correct": True, "grade": 3,
                           "reviewed_at": T0.isoformat()}])

    with pytest.raises(ImportFileError, match="line 2, column card_id: expected an id written in digits, got '2.0'"):
        import_back(export("logs", "ana"), curriculum="fresh")


@pytest.mark.django_db
def test_a_review_stored_without_a_grade_comes_back_graded_as_another_review():
    # as docs/importing.md says: the export writes 3 or 1 for it, and the grade is part of a review's identity
    import_review_file(fileobj=io.BytesIO((HLR + "1.0,1362076081,1,u1,de,en,lex1,haus,6,4,2,2\n"
                                                 "0.5,1362076181,1,u1,de,en,lex2,baum,6,4,2,0\n").encode()),
                       filename="traces.csv", curriculum_key="logs")

    result = import_back(export("logs", "u1"), learner="u1")

    assert result.created == 2
    assert list(ReviewLog.objects.order_by("concept__key", "id").values_list("concept__key", "correct", "grade")) == [
        ("lex1", True, None), ("lex1", True, 3), ("lex2", False, None), ("lex2", False, 1)]
