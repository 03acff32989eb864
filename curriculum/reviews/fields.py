"""A review's fields, declared once: names, types, optionality, bounds and lengths.

The one validation (``validation``) enforces them, the API's Review schema (curriculum/api/serializers.py) and the
file importers (``importers``) are derived from them, and the models' columns are sized by them
(curriculum/models.py). tests/test_layers.py fails when a bound is declared a second time elsewhere.
"""
from __future__ import annotations

import argparse
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.validators import slug_re

MAX_ID_LENGTH = 200  # a learner id, a concept key, an idempotency key (Learner.external_id, Concept.key, ...)
CURRICULUM_KEY_LENGTH = 100  # Curriculum.key
MIN_GRADE, MAX_GRADE = 1, 4  # Anki's Again / Hard / Good / Easy: MIN_GRADE exactly when wrong
MAX_RESPONSE_TIME_MS = 2**31 - 1  # a 32-bit signed integer column
EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)  # no review log this system reads is older


def check_curriculum_key(value: Any) -> str:
    """``value`` if it is a curriculum key, else ValueError saying what was expected (and showing at most 120
    characters of what came).

    The one rule of curriculum keys, for every entry point (the API, the importers, ``train_crl_policy
    --curriculum``, ``ensure_curriculum``): 1 to CURRICULUM_KEY_LENGTH letters, digits, '-' or '_', the alphabet of
    the model's SlugField (Django's ``slug_re``), which its admin form checks. A key names storage folders
    (``policies/KEY/v3/``, ``datasets/KEY/v1/``), so '../evil', a '/', a NUL byte or a control character never
    reaches a path or the database.
    """
    if not isinstance(value, str) or not value or len(value) > CURRICULUM_KEY_LENGTH or not slug_re.match(value):
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        raise ValueError(f"expected a curriculum key of 1 to {CURRICULUM_KEY_LENGTH} letters, digits, '-' or '_', "
                         f"got {shown}")
    return value


def curriculum_key_argument(value: str) -> str:
    """check_curriculum_key as argparse's ``type=`` (the commands' ``--curriculum KEY`` flags): a refused key stops
    the command before it does anything, with the rule's message."""
    try:
        return check_curriculum_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class ReviewField:
    """One field of a review as a client sends it: ``type`` is the Python type after validation (str, bool, int,
    datetime.datetime); an optional field (``required`` False) may also be null or absent; ``max_length`` bounds a
    string in characters, ``min_value``/``max_value`` an integer (inclusive)."""

    name: str
    type: type
    required: bool = True
    max_length: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    help_text: str = ""


REVIEW_FIELDS: tuple[ReviewField, ...] = (
    ReviewField("curriculum", str, max_length=CURRICULUM_KEY_LENGTH, help_text="Curriculum key."),
    ReviewField("learner", str, max_length=MAX_ID_LENGTH,
                help_text="The learner's id in your system (a string; an integer is read as its decimal string; compared "
                "in Unicode NFC, so one learner however the platform encodes the name)."),
    ReviewField("concept", str, max_length=MAX_ID_LENGTH,
                help_text="Concept key within the curriculum (compared in Unicode NFC)."),
    ReviewField("correct", bool, help_text="Whether the learner got it right."),
    ReviewField("grade", int, required=False, min_value=MIN_GRADE, max_value=MAX_GRADE,
                help_text="1 again (wrong), 2 hard, 3 good, 4 easy; must agree with `correct` (1 exactly when wrong)."),
    ReviewField("reviewed_at", dt.datetime,
                help_text="When the review happened: ISO 8601 / RFC 3339 with a zone ('Z' or '+02:00'; 't'/'z' "
                "accepted; fractional seconds of any length, kept to the millisecond; a leap second 23:59:60Z as "
                "23:59:59.999Z)."),
    ReviewField("response_time_ms", int, required=False, min_value=0, max_value=MAX_RESPONSE_TIME_MS,
                help_text="How long the learner took to answer, in milliseconds."),
    ReviewField("idempotency_key", str, required=False, max_length=MAX_ID_LENGTH,
                help_text="Unique per review: the same review sent again with its key is counted as a duplicate and "
                "not stored again; a key already stored for a different review is refused (409, nothing of the batch "
                "stored)."),
    ReviewField("recommendation_id", uuid.UUID, required=False,
                help_text="The `recommendation_id` of the recommendation this review answers (from POST "
                "/api/v1/recommendations), to attribute its outcome exactly; a UUID. Added in v1 (additive)."),
)
FIELD_NAMES = frozenset(field.name for field in REVIEW_FIELDS)
