"""API views: parse the body, call one service or selector, render; the OpenAPI schema is declared here."""
from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import serving
from ..models import Curriculum
from ..selectors import active_policy
from ..reviews.store import MAX_BATCH, record_reviews
from ..reviews.validation import IdempotencyConflict, ReviewValidationError
from .authentication import CachedTokenAuthentication
from .errors import Conflict, InvalidRequest, NotFoundField, exception_handler, field_errors
from .parsers import JSONBodyParser, buffer_chunked_body
from .serializers import (
    ActivePolicySerializer,
    ErrorSerializer,
    RecommendationRequestSerializer,
    RecommendationSerializer,
    ReviewOrBatchSerializer,
    ReviewResultSerializer,
)

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="The body is not valid: malformed JSON, a key twice in one "
                         "object, a missing or wrong field (each named in `fields`, with the item's `index` in a list), "
                         "or an unknown curriculum or concept. Nothing was stored."),
    415: OpenApiResponse(ErrorSerializer, description="A Content-Type other than JSON (`application/json`, "
                         "`application/*+json`, or none); `fields` names `Content-Type`. Nothing was stored."),
    401: OpenApiResponse(ErrorSerializer, description="No token, or an invalid one (`WWW-Authenticate: Token`)."),
    429: OpenApiResponse(ErrorSerializer, description="Over the per-token rate (`API_THROTTLE_RATE`); `Retry-After` "
                         "says how many seconds to wait."),
}
HEADERS = [
    OpenApiParameter("Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429],
                     description="Seconds until the token may send again."),
    OpenApiParameter("WWW-Authenticate", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[401],
                     description="`Token`: send `Authorization: Token <key>`."),
]


class ApiView(APIView):
    """Every API view: JSON bodies, token auth, throttling (from settings), errors in the API's shape."""

    authentication_classes = [CachedTokenAuthentication]
    parser_classes = [JSONBodyParser]

    def get_exception_handler(self):
        return exception_handler

    def initialize_request(self, request, *args, **kwargs):
        buffer_chunked_body(request)
        return super().initialize_request(request, *args, **kwargs)


class ReviewsView(ApiView):
    @extend_schema(
        operation_id="record_reviews",
        summary="Record reviews",
        description=f"One review object, or a list of up to {MAX_BATCH}. All or nothing: if any item is invalid, "
        "nothing is stored and every problem is listed. A review already stored (same learner, concept, time to the "
        "millisecond and outcome), or whose `idempotency_key` is already stored for it, is counted in `duplicates` "
        "and not stored again. A time more than the tolerance (default 5 minutes) after the server clock, or before "
        "1990, is refused. An `idempotency_key` already used for another review is a 409 naming it; nothing is stored.",
        request={"application/json": ReviewOrBatchSerializer},
        responses={201: ReviewResultSerializer, **ERRORS, 409: OpenApiResponse(ErrorSerializer, description=(
            "An `idempotency_key` is already used for another review (named with the item's `index`); nothing was stored."))},
        parameters=HEADERS,
        examples=[
            OpenApiExample("one review", request_only=True, value={
                "curriculum": "demo", "learner": "u-42", "concept": "c3", "correct": True, "grade": 3,
                "reviewed_at": "2026-01-05T09:00:00Z", "response_time_ms": 1800, "idempotency_key": "u-42/1017",
            }),
            OpenApiExample("stored", response_only=True, status_codes=["201"], value={"created": 1, "duplicates": 0}),
            OpenApiExample("invalid batch", response_only=True, status_codes=["400"], value={"error": {
                "message": "item 1: reviewed_at: the date-time has no zone; add one, e.g. 'Z' or '+02:00'",
                "fields": [{"index": 1, "field": "reviewed_at",
                            "message": "the date-time has no zone; add one, e.g. 'Z' or '+02:00'"}],
            }}),
        ],
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, (dict, list)):
            raise InvalidRequest([{"field": "body", "message": "expected a review object or a list of review objects"}])
        try:
            result = record_reviews(items=body if isinstance(body, list) else [body])
        except ReviewValidationError as exc:
            # a single object has no index to name
            errors = exc.errors if isinstance(body, list) else [_without_index(e) for e in exc.errors]
            raise (Conflict if isinstance(exc, IdempotencyConflict) else InvalidRequest)(errors) from None
        return Response({"created": result.created, "duplicates": result.duplicates}, status=status.HTTP_201_CREATED)


def _without_index(error: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k != "index"}


class RecommendationsView(ApiView):
    @extend_schema(
        operation_id="recommend",
        summary="Next concept for a learner",
        description="The concept the learner should practise next, chosen by the curriculum's active policy version. "
        "A learner never seen is a new learner (nothing is stored). Without an active policy the fallback "
        "`lowest_recall` answers and `strategy` says so. `unscored` lists the candidates (all concepts when none "
        "are given) that the active policy version cannot score, e.g. concepts added to the curriculum after it was "
        "trained: they are never recommended while that version is active.",
        request={"application/json": RecommendationRequestSerializer},
        responses={200: RecommendationSerializer, **ERRORS},
        parameters=HEADERS,
        examples=[
            OpenApiExample("request", request_only=True,
                           value={"curriculum": "demo", "learner": "u-42", "candidates": ["c1", "c3", "c4"]}),
            OpenApiExample("policy", response_only=True, status_codes=["200"], value={
                "concept": "c3", "scores": {"c1": 0.12, "c3": 0.71, "c4": 0.17}, "policy": {"version": 4},
                "strategy": "policy", "unscored": [],
            }),
            OpenApiExample("policy with unscored candidates", response_only=True, status_codes=["200"], value={
                "concept": "c3", "scores": {"c1": 0.23, "c3": 0.77}, "policy": {"version": 4},
                "strategy": "policy", "unscored": ["c21", "c22"],
            }),
            OpenApiExample("fallback", response_only=True, status_codes=["200"], value={
                "concept": "c4", "scores": {"c1": 0.83, "c3": 0.41, "c4": 0.0}, "policy": None,
                "strategy": "fallback:lowest_recall", "unscored": [],
            }),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = RecommendationRequestSerializer(data=request.data)
        if not serializer.is_valid():
            raise InvalidRequest(field_errors(serializer.errors))
        try:
            rec = serving.recommend(**serializer.validated_data)
        except serving.UnknownCurriculum as exc:
            raise InvalidRequest([{"field": "curriculum", "message": str(exc)}]) from None
        except serving.UnknownConcepts as exc:
            raise InvalidRequest([{"field": "candidates", "message": str(exc)}]) from None
        except serving.NothingToRecommend as exc:
            raise InvalidRequest([{"field": "curriculum", "message": str(exc)}]) from None
        return Response({
            "concept": rec.concept,
            "scores": rec.scores,
            "policy": None if rec.policy_version is None else {"version": rec.policy_version},
            "strategy": rec.strategy,
            "unscored": list(rec.unscored),
        })


class ActivePolicyView(ApiView):
    @extend_schema(
        operation_id="active_policy",
        summary="The active policy version",
        description="Metadata of the curriculum's active policy version: registry fields and its DTLite config.",
        responses={
            200: ActivePolicySerializer,
            401: ERRORS[401],
            404: OpenApiResponse(ErrorSerializer, description="Unknown curriculum, or no active policy version; "
                                 "`fields` names `key`."),
            429: ERRORS[429],
        },
        parameters=HEADERS,
    )
    def get(self, request: Request, key: str) -> Response:
        curriculum = Curriculum.objects.filter(key=key).first()
        if curriculum is None:
            raise NotFoundField([{"field": "key", "message": f"unknown curriculum {key!r}"}])
        policy = active_policy(curriculum=curriculum)
        if policy is None:
            raise NotFoundField([{"field": "key", "message": f"curriculum {key!r} has no active policy version"}])
        policy.curriculum = curriculum
        return Response(ActivePolicySerializer(policy).data)
