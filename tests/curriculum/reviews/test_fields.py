"""curriculum.reviews.fields: the one declaration of a review's fields is what validation enforces, what the
OpenAPI schema documents and what the database columns hold."""
import dataclasses
import datetime as dt
import uuid

import pytest
import yaml

from curriculum.models import Concept, Curriculum, Learner, ReviewLog
from curriculum.reviews.fields import CURRICULUM_KEY_LENGTH, EARLIEST, MAX_ID_LENGTH, REVIEW_FIELDS, check_curriculum_key
from curriculum.reviews.validation import ReviewFields, ReviewValidationError, check_review_item

VALID = {"curriculum": "demo", "learner": "u1", "concept": "c0", "correct": True, "grade": 3,
         "reviewed_at": "2026-01-05T09:00:00Z", "response_time_ms": 1200, "idempotency_key": "k1"}


def bounds(field):
    """(a value at each declared bound of the field, one just past it)."""
    if field.max_length:
        yield "x" * field.max_length, "x" * (field.max_length + 1)
    if field.min_value is not None:
        yield field.min_value, field.min_value - 1
    if field.max_value is not None:
        yield field.max_value, field.max_value + 1


# the curriculum's key is checked by looking it up (an unknown key is refused), not by its length
BOUNDED = [(f.name, at, past) for f in REVIEW_FIELDS if f.name != "curriculum" for at, past in bounds(f)]


def refused_fields(item: dict) -> list[str]:
    try:
        check_review_item(item)
    except ReviewValidationError as exc:
        return [e["field"] for e in exc.errors]
    return []


def test_every_declared_bound_is_checked():
    assert {name for name, _, _ in BOUNDED} == {"learner", "concept", "grade", "response_time_ms", "idempotency_key"}


@pytest.mark.parametrize("name, at_bound, past_bound", BOUNDED)
def test_validation_accepts_a_value_at_the_declared_bound_and_refuses_one_past_it(name, at_bound, past_bound):
    at = {**VALID, name: at_bound, "correct": not (name == "grade" and at_bound == 1)}
    assert refused_fields(at) == []
    assert refused_fields({**VALID, name: past_bound}) == [name]


@pytest.mark.parametrize("field", [f for f in REVIEW_FIELDS if f.required and f.name != "curriculum"],
                         ids=lambda f: f.name)
def test_validation_refuses_a_review_without_a_required_field(field):
    assert field.name in refused_fields({k: v for k, v in VALID.items() if k != field.name})


@pytest.mark.parametrize("field", [f for f in REVIEW_FIELDS if not f.required], ids=lambda f: f.name)
def test_validation_accepts_an_optional_field_null_or_absent(field):
    assert refused_fields({**VALID, field.name: None}) == []
    assert refused_fields({k: v for k, v in VALID.items() if k != field.name}) == []


def test_a_review_time_before_the_declared_earliest_is_refused():
    assert refused_fields({**VALID, "reviewed_at": (EARLIEST - dt.timedelta(seconds=1)).isoformat()}) == ["reviewed_at"]
    assert refused_fields({**VALID, "reviewed_at": EARLIEST.isoformat()}) == []


def test_the_validated_review_has_the_declared_fields():
    # the curriculum is resolved by each route, not carried in the validated fields
    assert {f.name for f in dataclasses.fields(ReviewFields)} == {f.name for f in REVIEW_FIELDS} - {"curriculum"}


def test_the_database_columns_hold_the_declared_lengths():
    assert Curriculum._meta.get_field("key").max_length == CURRICULUM_KEY_LENGTH
    for model, name in ((Learner, "external_id"), (Concept, "key"), (ReviewLog, "idempotency_key")):
        assert model._meta.get_field(name).max_length == MAX_ID_LENGTH, f"{model.__name__}.{name}"


@pytest.mark.django_db
def test_the_schema_documents_each_declared_field(client):
    review = yaml.safe_load(client.get("/api/schema/").content)["components"]["schemas"]["Review"]
    kinds = {str: "string", bool: "boolean", int: "integer", dt.datetime: "string", uuid.UUID: "string"}

    assert list(review["properties"]) == [f.name for f in REVIEW_FIELDS]
    assert set(review["required"]) == {f.name for f in REVIEW_FIELDS if f.required}
    for field in REVIEW_FIELDS:
        documented = review["properties"][field.name]
        if field.name == "learner":  # a string, or an integer read as its decimal string
            assert documented["oneOf"] == [{"type": "string", "maxLength": field.max_length}, {"type": "integer"}]
            assert documented["description"] == field.help_text
            continue
        assert documented["type"] == kinds[field.type], field.name
        assert documented.get("maxLength") == field.max_length, field.name
        assert (documented.get("minimum"), documented.get("maximum")) == (field.min_value, field.max_value), field.name
        assert documented.get("nullable", False) is not field.required, field.name
        assert documented["description"] == field.help_text, field.name


@pytest.mark.parametrize("key", ["demo", "Spanish-A1", "x_1", "k" * CURRICULUM_KEY_LENGTH])
def test_a_curriculum_key_of_letters_digits_hyphens_and_underscores_is_accepted(key):
    assert check_curriculum_key(key) == key


@pytest.mark.parametrize("key", ["", "../evil", "a/b", "demo\x00", "demo\n", "dé", "a b", "k" * (CURRICULUM_KEY_LENGTH + 1),
                                 None, 7])
def test_anything_else_is_refused_by_the_one_key_rule_saying_what_was_expected(key):
    with pytest.raises(ValueError, match=r"expected a curriculum key of 1 to 100 letters, digits, '-' or '_'"):
        check_curriculum_key(key)


def test_the_key_rule_is_the_models_slug_alphabet():
    from django.core.exceptions import ValidationError

    for key in ("../evil", "dé", "ok-key_1"):
        try:
            Curriculum._meta.get_field("key").run_validators(key)
            model_accepts = True
        except ValidationError:
            model_accepts = False
        try:
            check_curriculum_key(key)
            rule_accepts = True
        except ValueError:
            rule_accepts = False
        assert model_accepts == rule_accepts, key
