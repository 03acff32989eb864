"""The API's request and response bodies; they are also what the OpenAPI schema documents, field by field."""
from __future__ import annotations

import datetime as dt
import threading
import uuid
from functools import cache
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from ..experiments.outcomes import MAX_LEARNERS_PER_ARM
from ..models import PolicyModel
from ..reviews.fields import CURRICULUM_KEY_LENGTH, MAX_ID_LENGTH, REVIEW_FIELDS, ReviewField, check_curriculum_key
from ..reviews.store import MAX_BATCH
from ..reviews.validation import ReviewValidationError, check_learner_id, check_time, normalise_id
from ..serving import MAX_BATCH_LEARNERS

MAX_CANDIDATES = 10_000

# DRF's default messages ("This field is required.", "Ensure this field has at least 1 elements.") in the house
# style of review ingestion (curriculum.reviews.validation): lower case, no full stop, saying what was expected.
# The field is named by the error's "field" (curriculum.api.errors.field_errors).
REQUIRED = {"required": "this field is required", "null": "expected a value, got null"}
STRING_MESSAGES = {**REQUIRED, "blank": "expected a non-blank string",
                   "max_length": "expected at most {max_length} characters", "invalid": "expected a string"}
LIST_MESSAGES = {**REQUIRED, "not_a_list": "expected a list, got {input_type}", "empty": "expected a non-empty list",
                 "min_length": "expected at least {min_length} item(s)",
                 "max_length": "expected at most {max_length} items"}
OBJECT_MESSAGES = {"invalid": "expected a JSON object, got {datatype}", "null": "expected a JSON object, got null"}


def render(serializer_class: type[serializers.BaseSerializer], instance: Any) -> dict[str, Any]:
    """``instance`` as an answer body, rendered by ``serializer_class`` (an output serializer of this module).

    One serializer per class and process does the rendering: building one deep-copies its fields (about 170 us for
    RecommendationSerializer, twenty times the rendering itself), and ``to_representation`` keeps no state, so
    threads share it."""
    return _renderer(serializer_class).to_representation(instance)



_validators = threading.local()


def validate(serializer_class: type[serializers.Serializer], data: Any) -> tuple[dict[str, Any] | None, Any]:
    """``serializer_class(data=data)``'s (validated_data, None) when valid, else (None, its errors), by one serializer
    per class and thread: building one deep-copies its declared fields (measured 0.9 ms against 0.08 ms for the
    validation itself, a request serializer on the loaded development machine), and a validation keeps nothing
    on the serializer but ``initial_data`` and its results, which are reset here each time."""
    serializer = _validators.__dict__.setdefault("by_class", {}).get(serializer_class)
    if serializer is None:
        serializer = _validators.by_class[serializer_class] = serializer_class(data=data)
    else:
        serializer.initial_data = data
        for name in ("_validated_data", "_errors", "_data"):
            serializer.__dict__.pop(name, None)
    if serializer.is_valid():
        return serializer.validated_data, None
    return None, serializer.errors

@cache
def _renderer(serializer_class: type[serializers.BaseSerializer]) -> serializers.BaseSerializer:
    return serializer_class()


class StrictCharField(serializers.CharField):
    """A string as sent: no trimming, no silent conversion of numbers or booleans (learner ids may be integers)."""

    def __init__(self, *, integers: bool = False, **kwargs: Any):
        self.integers = integers
        kwargs.setdefault("trim_whitespace", False)
        kwargs["error_messages"] = {**STRING_MESSAGES, **kwargs.get("error_messages", {})}
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not (isinstance(data, str) or (self.integers and isinstance(data, int))):
            raise serializers.ValidationError("expected a string" + (" or an integer" if self.integers else ""))
        return super().to_internal_value(data)


class CurriculumKeyField(StrictCharField):
    """A curriculum key by the one rule of keys (curriculum.reviews.fields.check_curriculum_key): a malformed key is
    refused as such, as the reviews route refuses it, not looked up and reported unknown."""

    def __init__(self, **kwargs: Any):
        # as the reviews route words them: "" and null are missing; anything else not a key gets the key rule
        kwargs["error_messages"] = {"blank": REQUIRED["required"], "null": REQUIRED["required"],
                                    **kwargs.get("error_messages", {})}
        super().__init__(max_length=CURRICULUM_KEY_LENGTH, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        try:
            return check_curriculum_key(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ConceptKeyField(StrictCharField):
    """A concept key as reviews name one: in Unicode NFC (curriculum.reviews.validation.normalise_id), so a key
    sent decomposed finds the concept stored composed."""

    def to_internal_value(self, data: Any) -> str:
        return normalise_id(super().to_internal_value(data))


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with a zone, read and bounded as review ingestion reads `reviewed_at` (a naive one is refused, not
    guessed; before 1990 or past the server clock's tolerance is refused)."""

    default_error_messages = {**serializers.DateTimeField.default_error_messages, **REQUIRED}

    def to_internal_value(self, value: Any) -> dt.datetime:
        if not isinstance(value, str):
            raise serializers.ValidationError("expected an ISO 8601 date-time string with a zone")
        try:
            return check_time(value, field=self.field_name or "at")
        except ReviewValidationError as exc:
            raise serializers.ValidationError(exc.errors[0]["message"]) from None


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": MAX_ID_LENGTH}, {"type": "integer"}]})
class LearnerIdField(StrictCharField):
    """A learner id by the rules every route applies (curriculum.reviews.validation.check_learner_id)."""

    def __init__(self, **kwargs: Any):
        # "" says what " " says (check_learner_id): one message for a blank id on every route
        blank = "this field is required (a non-blank learner id)"
        kwargs["error_messages"] = {"blank": blank, "null": blank, **kwargs.get("error_messages", {})}
        super().__init__(integers=True, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            raise serializers.ValidationError("expected a string or an integer")
        try:
            return check_learner_id(data, field=self.field_name or "learner")
        except ReviewValidationError as exc:
            raise serializers.ValidationError(exc.errors[0]["message"]) from None


# ------------------------------------------------------------------------------------------- reviews
# The schema's field class per declared type (curriculum.reviews.fields.ReviewField.type).
_SCHEMA_FIELDS: dict[type, type[serializers.Field]] = {
    str: serializers.CharField, bool: serializers.BooleanField, int: serializers.IntegerField,
    dt.datetime: serializers.DateTimeField, uuid.UUID: serializers.UUIDField,
}


def schema_field(field: ReviewField) -> serializers.Field:
    """The DRF field that documents a declared review field: its type, optionality (optional fields may be null),
    bounds and help text. KeyError for a type without a schema field."""
    bounds = {key: value for key, value in (("max_length", field.max_length), ("min_value", field.min_value),
                                             ("max_value", field.max_value)) if value is not None}
    kind = LearnerIdField if field.name == "learner" else _SCHEMA_FIELDS[field.type]  # a string or an integer
    return kind(required=field.required, allow_null=not field.required, help_text=field.help_text, **bounds)


# Built from curriculum.reviews.fields, the one declaration; it documents (the schema's `Review`) and does not
# validate: `curriculum.reviews.store.record_reviews` validates the batch (curriculum.reviews.validation).
class ReviewSerializer(serializers.Serializer):
    """One review. Every field is checked as documented here; a batch with any invalid review stores nothing."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {field.name: schema_field(field) for field in REVIEW_FIELDS}


class ReviewOrBatchSerializer(serializers.Serializer):
    """A review object, or a list of them (documentation only; see ReviewOrBatchSchema)."""


class ReviewOrBatchSchema(OpenApiSerializerExtension):
    """OpenAPI for ReviewOrBatchSerializer: oneOf a Review and a ReviewBatch (an array of at most MAX_BATCH
    Reviews), a component of its own so that the docs name the two variants apart ("Review | ReviewBatch")."""

    target_class = ReviewOrBatchSerializer

    def map_serializer(self, auto_schema, direction):
        review = auto_schema.resolve_serializer(ReviewSerializer, direction).ref
        batch = ResolvedComponent(
            name="ReviewBatch", type=ResolvedComponent.SCHEMA, object="ReviewBatch",
            schema={"type": "array", "items": review, "maxItems": MAX_BATCH, "title": "ReviewBatch",
                    "description": f"Up to {MAX_BATCH} reviews, stored all or nothing."},
        )
        auto_schema.registry.register_on_missing(batch)
        return {"oneOf": [review, batch.ref]}


class ReviewResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Reviews stored by this request.")
    duplicates = serializers.IntegerField(help_text="Reviews not stored again: the same review (learner, concept, time to the millisecond, outcome) was already stored or sent twice.")


# ------------------------------------------------------------------------------------ recommendations
class CandidatesField(serializers.ListField):
    """Concept keys to choose among. A key sent more than once counts once (deduplicated, first position kept):
    the answer's ``scores`` and ``unscored`` name each concept once."""

    def __init__(self, **kwargs: Any):
        kwargs["error_messages"] = {**LIST_MESSAGES, **kwargs.get("error_messages", {})}
        super().__init__(**kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        # after the length bounds, which count what was sent
        value = super().run_validation(data)
        return value if value is serializers.empty or value is None else list(dict.fromkeys(value))


class RecommendationRequestSerializer(serializers.Serializer):
    """Which learner, in which curriculum, choosing among which concepts, when. Unknown fields are refused."""

    default_error_messages = OBJECT_MESSAGES

    curriculum = CurriculumKeyField(help_text="Curriculum key.")
    learner = LearnerIdField(
        max_length=MAX_ID_LENGTH,
        help_text="The learner's id in your system (trimmed; non-blank; no control characters; compared in Unicode "
        "NFC); a learner never seen is a new learner.",
    )
    candidates = CandidatesField(
        child=ConceptKeyField(max_length=MAX_ID_LENGTH), required=False, min_length=1, max_length=MAX_CANDIDATES,
        help_text="Concept keys to choose from (default: all); a key sent twice counts once (deduplicated); keys "
        "that are not concepts of the curriculum are refused.",
    )
    at = AwareDateTimeField(required=False, help_text="The moment of the decision, ISO 8601 with a zone (default: now).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # as review ingestion does: a misspelt optional field is an error, not silently ignored
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: "unknown field" for name in unknown})
        return attrs


# A policy version named by its number, rendered from the number itself (``source="*"``): a field holding a version
# number or None renders as {"version": n} or null. (Comments, not docstrings: a docstring is the schema's text.)
class PolicyRefSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="*", help_text="The policy version that answered.")


# A curriculum.serving.Recommendation as the API answers it.
class RecommendationSerializer(serializers.Serializer):
    recommendation_id = serializers.UUIDField(
        help_text="This recommendation's id in the recommendation log; send it back on the review that follows "
        "(`recommendation_id`) to attribute the review's outcome to it exactly. Added in v1 (additive).")
    concept = serializers.CharField(help_text="The concept to practise next.")
    scores = serializers.DictField(
        child=serializers.FloatField(),
        help_text="Per candidate concept: with strategy `policy`, the policy's probability of choosing it; with "
        "`fallback:lowest_recall`, its estimated recall probability now (the lowest is chosen; 0 when never reviewed); "
        "with `fallback:round_robin`, the same estimates (the concept whose turn it is is chosen).",
    )
    policy = PolicyRefSerializer(source="policy_version", allow_null=True,
                                 help_text="null when no policy version answered.")
    strategy = serializers.ChoiceField(
        choices=["policy", "fallback:lowest_recall", "fallback:round_robin"],
        help_text="`policy`: the active policy version chose. `fallback:lowest_recall`: no active policy (or none of "
        "the candidates is in its action space): the concept with the lowest estimated recall, never-reviewed "
        "concepts first in position order. `fallback:round_robin`: the same, on a curriculum whose fallback rule is "
        "round robin: the candidates in position order, in turn by the learner's number of reviews.",
    )
    unscored = serializers.ListField(
        child=serializers.CharField(),
        help_text="Candidate concepts (all concepts when `candidates` is not given) that the policy version which "
        "answered cannot score, in position order: outside its action space (e.g. added to the curriculum after it "
        "was trained), so never recommended. Empty with the fallback, which scores every concept. Added in v1 "
        "(additive).",
    )



def recommendation_body(rec: Any) -> dict[str, Any]:
    """``render(RecommendationSerializer, rec)`` for a curriculum.serving.Recommendation, built directly: the same
    keys in the same order and the same values (tests/curriculum/api/test_response_serializers.py compares them),
    without a serializer field call per value (about 25 us a recommendation, what a batch of 1,000 spent rendering)."""
    return {
        "recommendation_id": rec.recommendation_id,
        "concept": rec.concept,
        "scores": {key: float(value) for key, value in rec.scores.items()},
        "policy": None if rec.policy_version is None else {"version": int(rec.policy_version)},
        "strategy": rec.strategy,
        "unscored": list(rec.unscored),
    }

# ------------------------------------------------------------------------------------------- policies
class ArtifactSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")


def _config(name: str, field_class: type[serializers.Field], **kwargs: Any) -> serializers.Field:
    # a key of the version's dt_lite_config.json; null where an old or hand-made config lacks it
    return field_class(source=f"config.{name}", read_only=True, default=None, allow_null=True, **kwargs)


class ActivePolicySerializer(serializers.ModelSerializer):
    """The active policy version's metadata: registry fields, then its DTLite config."""

    curriculum = serializers.SlugRelatedField(slug_field="key", read_only=True)
    metrics = serializers.JSONField(read_only=True, help_text="Closed-loop evaluation against the baselines (as `evaluate_policy --json`).")
    concept_keys = _config("concept_keys", serializers.ListField, child=serializers.CharField(), help_text="Concept keys in action order.")
    context_length = _config("context_length", serializers.IntegerField, help_text="Reviews of context the policy reads.")
    state_dim = _config("state_dim", serializers.IntegerField)
    action_dim = _config("action_dim", serializers.IntegerField)
    hidden_dim = _config("hidden_dim", serializers.IntegerField)
    num_layers = _config("num_layers", serializers.IntegerField)
    num_heads = _config("num_heads", serializers.IntegerField)
    attention_window = _config("attention_window", serializers.IntegerField, help_text=(
        "Local attention: each token attends to itself and the W - 1 tokens before it (the default since "
        "2026-12-07); null: full attention."))
    max_timestep = _config("max_timestep", serializers.IntegerField)
    target_return = _config("target_return", serializers.FloatField, help_text="Return-to-go the policy is conditioned on.")
    temperature = _config("temperature", serializers.FloatField)
    top_k = _config("top_k", serializers.IntegerField)
    encoder = _config("encoder", serializers.DictField, help_text="The state encoder's parameters.")
    artifacts = serializers.SerializerMethodField(help_text="Artifact file name -> SHA-256 and size.")

    class Meta:
        model = PolicyModel
        fields = [
            "curriculum", "version", "status", "created_at", "promoted_at", "metrics", "concept_keys", "context_length",
            "state_dim", "action_dim", "hidden_dim", "num_layers", "num_heads", "attention_window", "max_timestep",
            "target_return",
            "temperature", "top_k", "encoder", "artifacts",
        ]

    @extend_schema_field(serializers.DictField(child=ArtifactSerializer()))
    def get_artifacts(self, policy: PolicyModel) -> dict[str, dict[str, Any]]:
        # storage paths are internal: clients get what identifies the files
        return {name: {"sha256": a.get("sha256"), "size": a.get("size")} for name, a in policy.artifacts.items()}


# --------------------------------------------------------------------------------------------- errors
class ErrorFieldSerializer(serializers.Serializer):
    index = serializers.IntegerField(required=False, help_text="Position of the item in a list body (review batches).")
    field = serializers.CharField(help_text="The field at fault, e.g. `reviewed_at`, `candidates[2]`, or `body`.")
    message = serializers.CharField(help_text="What was expected.")


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="One line: the first problem, and how many more.")
    fields = ErrorFieldSerializer(many=True, help_text="Every problem found (empty for errors not about the body).")


# Renders an object with `message` and `fields` (curriculum.api.errors.ApiError) as {"error": {...}}.
class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer(source="*")


# ------------------------------------------------------------------------------ batch recommendations
@extend_schema_field({
    "type": "array", "minItems": 1, "maxItems": MAX_BATCH_LEARNERS,
    "items": {"oneOf": [{"type": "string", "maxLength": MAX_ID_LENGTH}, {"type": "integer"}]},
})
class LearnerIdsField(serializers.ListField):
    """Learner ids as sent, 1 to MAX_BATCH_LEARNERS of them. The ids themselves are checked one by one by the view
    (check_learner_id), so that an invalid id is that learner's error, not the batch's."""

    def __init__(self, **kwargs: Any):
        kwargs["error_messages"] = {**LIST_MESSAGES, **kwargs.get("error_messages", {})}
        super().__init__(min_length=1, max_length=MAX_BATCH_LEARNERS, **kwargs)

    def to_internal_value(self, data: Any) -> list[Any]:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return data


class BatchRecommendationRequestSerializer(serializers.Serializer):
    """Many learners of one curriculum, at one moment. Unknown fields are refused."""

    default_error_messages = OBJECT_MESSAGES

    curriculum = CurriculumKeyField(help_text="Curriculum key.")
    learners = LearnerIdsField(
        help_text=f"1 to {MAX_BATCH_LEARNERS} learner ids of your system (each as in the single endpoint's "
        "`learner`). A learner never seen is a new learner; an invalid id is that learner's error in `results`; an id "
        "sent twice is answered twice.",
    )
    at = AwareDateTimeField(required=False, help_text="The moment of the decisions, ISO 8601 with a zone (default: now).")

    validate = RecommendationRequestSerializer.validate


# One learner's answer in a batch: the learner as sent, then the single endpoint's fields.
class BatchRecommendationSerializer(RecommendationSerializer):
    learner = serializers.JSONField(help_text="The learner id as sent.")


# One learner's error in a batch (an invalid id): the learner as sent (null unless a string or an integer).
class BatchLearnerErrorSerializer(serializers.Serializer):
    learner = serializers.JSONField(allow_null=True, help_text="The learner id as sent; null unless a string or integer.")
    error = ErrorDetailSerializer(help_text="What is wrong with this learner id; `fields` names `learners[i]`.")


@extend_schema_field(PolymorphicProxySerializer(
    component_name="BatchResult", serializers=[BatchRecommendationSerializer, BatchLearnerErrorSerializer],
    resource_type_field_name=None, many=False))
class BatchResultField(serializers.JSONField):
    """A learner's recommendation, or its error (schema only: the view renders each result)."""


class BatchRecommendationResultSerializer(serializers.Serializer):
    results = serializers.ListField(
        child=BatchResultField(),
        help_text="One per learner sent, in the same order: a recommendation (the single endpoint's fields, plus "
        "`learner`), or `{\"learner\", \"error\"}` for an invalid learner id.",
    )


# ------------------------------------------------------------------------------------------- experiments
class ExperimentArmSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="A for the control, then B, C...")
    version = serializers.IntegerField(source="policy.version", allow_null=True, default=None,
                                       help_text="The arm's policy version; null: the fallback rule.")
    control = serializers.BooleanField(source="is_control")
    traffic_percent = serializers.IntegerField(
        help_text="Split: the arm's share of the learners, in percent. Shadow: the control serves everyone (100) and "
        "a candidate's share is of the learners whose shadow choice it logs.")


class ExperimentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    curriculum = serializers.CharField(source="curriculum.key")
    name = serializers.CharField()
    mode = serializers.ChoiceField(choices=["split", "shadow"], help_text="`split`: each learner is served by its arm "
                                   "(sticky); `shadow`: the control serves, a candidate chooses and logs only.")
    status = serializers.ChoiceField(choices=["draft", "running", "stopped"])
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    horizon_s = serializers.IntegerField(help_text="Seconds after each learner's newest review at which the estimated "
                                         "recall outcome is read.")
    min_effect = serializers.FloatField(help_text="The difference the sample size is computed to confirm.")
    arms = ExperimentArmSerializer(many=True, source="arms.all")


class OutcomeMeanSerializer(serializers.Serializer):
    mean = serializers.FloatField(allow_null=True, help_text="Mean over the arm's learners; null without any.")
    ci95 = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True,
                                 help_text="95% interval (normal, over learners); null below 2 learners.")
    learners = serializers.IntegerField(
        help_text=f"Learners with this outcome, among at most {MAX_LEARNERS_PER_ARM:,} per arm: a uniform random "
        "sample, seeded by the experiment's id, when the arm has more learners.")


class ArmOutcomeSerializer(serializers.Serializer):
    label = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    control = serializers.BooleanField()
    traffic_percent = serializers.IntegerField()
    decisions = serializers.IntegerField(help_text="Recommendations the arm served.")
    shadow_decisions = serializers.IntegerField(help_text="Shadow mode: choices the arm logged without serving them.")
    learners = serializers.IntegerField(help_text="Learners the arm served.")
    recall_next = OutcomeMeanSerializer(help_text="Recall at the next review of the recommended concepts.")
    horizon_recall = OutcomeMeanSerializer(help_text="The memory model's mean estimated recall, over all concepts, "
                                           "`horizon_s` after each learner's newest review.")
    reviews = OutcomeMeanSerializer(help_text="Reviews per learner since the start.")


class DifferenceSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="The candidate arm compared with the control.")
    metric = serializers.CharField(help_text="`recall_next`.")
    difference = serializers.FloatField(allow_null=True, help_text="Candidate minus control; null: too few learners.")
    ci95 = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    more_learners_per_arm = serializers.IntegerField(
        allow_null=True, help_text="Learners per arm still needed to confirm `min_effect` (5% two-sided, 80% power).")
    summary = serializers.CharField(help_text='e.g. "B is ahead of A by 0.031 [0.012, 0.050]; about 1,400 more '
                                    'learners per arm to confirm a 0.01 difference".')


class ExperimentOutcomesSerializer(serializers.Serializer):
    arms = ArmOutcomeSerializer(many=True)
    differences = DifferenceSerializer(many=True)


class ExperimentDetailSerializer(ExperimentSerializer):
    outcomes = ExperimentOutcomesSerializer(help_text="Per-arm outcomes from the reviews that followed.")


class ExperimentListSerializer(serializers.Serializer):
    experiments = ExperimentSerializer(many=True)
