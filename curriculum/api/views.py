"""API views: parse the body, call one service or selector, render; the OpenAPI schema is declared here."""
from __future__ import annotations

from typing import Any

from django.utils.log import log_response
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import serving
from ..experiments.logged_estimates import MAX_DECISIONS
from ..experiments.outcomes import MAX_LEARNERS_PER_ARM, experiment_outcomes
from ..models import Curriculum, Experiment
from ..selectors import active_policy
from ..reviews.fields import EARLIEST, check_curriculum_key
from ..reviews.store import MAX_BATCH, record_reviews
from ..reviews.validation import IdempotencyConflict, ReviewValidationError, check_learner_id
from .authentication import CachedTokenAuthentication
from .concurrency import batch_requests
from .errors import Conflict, InvalidRequest, NotFoundField, ServerBusy, exception_handler, field_errors
from .parsers import JSONBodyParser, buffer_chunked_body, refuse_unread_chunked_body
from .renderers import ApiJSONRenderer
from .serializers import (
    ActivePolicySerializer,
    BatchRecommendationRequestSerializer,
    BatchRecommendationResultSerializer,
    ErrorSerializer,
    ExperimentDetailSerializer,
    ExperimentListSerializer,
    RecommendationRequestSerializer,
    RecommendationSerializer,
    ReviewOrBatchSerializer,
    ReviewResultSerializer,
    recommendation_body,
    render,
    validate,
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
    503: OpenApiResponse(ErrorSerializer, description="The database (or the artifact storage) is unreachable or did "
                         "not answer in time; `Retry-After` says when to try again. Nothing was stored."),
}
# The WSGI environ key under which the lean path leaves the error that stopped it after the request was counted
# (RecommendationsView raises it instead of recommending again). No client can send it: a header reaches the environ
# as HTTP_*.
LEAN_PATH_ERROR = "crl.lean_path.error"
# Seconds a client refused by the batch endpoint's concurrency limit is told to wait (Retry-After).
BUSY_RETRY_AFTER_S = 1
BATCH_ERRORS = {**ERRORS, 503: OpenApiResponse(ErrorSerializer, description="The database (or the artifact storage) "
                "is unreachable or did not answer in time, or this server process is already answering "
                "`API_BATCH_CONCURRENCY` batch requests (default 1; a push job should send its batches one after "
                "another per server process); `Retry-After` says when to try again. Nothing was answered.")}
HEADERS = [
    OpenApiParameter("Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[429, 503],
                     description="Seconds to wait before sending again."),
    OpenApiParameter("WWW-Authenticate", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[401],
                     description="`Token`: send `Authorization: Token <key>`."),
]


class ApiView(APIView):
    """Every API view: JSON bodies, token auth, throttling (from settings), errors in the API's shape, responses
    rendered by orjson (renderers.ApiJSONRenderer)."""

    authentication_classes = [CachedTokenAuthentication]
    parser_classes = [JSONBodyParser]
    renderer_classes = [ApiJSONRenderer]

    def get_exception_handler(self):
        return exception_handler

    def initialize_request(self, request, *args, **kwargs):
        buffer_chunked_body(request)
        return super().initialize_request(request, *args, **kwargs)

    def check_permissions(self, request):
        # after authentication and permissions, before throttles: a body that cannot be read uses no budget and
        # never waits for a batch slot only to be refused
        super().check_permissions(request)
        refuse_unread_chunked_body(request._request)


class ReviewsView(ApiView):
    @extend_schema(
        operation_id="record_reviews",
        summary="Record reviews",
        description=f"One review object, or a list of up to {MAX_BATCH}. All or nothing: if any item is invalid, "
        "nothing is stored and every problem is listed. A review already stored (same learner, concept, time to the "
        "millisecond and outcome), or whose `idempotency_key` is already stored for it, is counted in `duplicates` "
        "and not stored again. A time more than the tolerance (default 5 minutes) after the server clock, or before "
        f"{EARLIEST.year}, is refused. An `idempotency_key` already used for another review is a 409 naming it; "
        "nothing is stored.",
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
        return Response(render(ReviewResultSerializer, result), status=status.HTTP_201_CREATED)


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
        valid, errors = validate(RecommendationRequestSerializer, request.data)
        if errors is not None:
            raise InvalidRequest(field_errors(errors))
        try:
            failed = request.META.get(LEAN_PATH_ERROR)
            if failed is not None:  # the lean path's attempt failed (after counting): its error, not a second try
                raise failed
            rec = serving.recommend(**valid)
        except serving.UnknownCurriculum as exc:
            raise InvalidRequest([{"field": "curriculum", "message": str(exc)}]) from None
        except serving.UnknownConcepts as exc:
            raise InvalidRequest([{"field": "candidates", "message": str(exc)}]) from None
        except serving.NothingToRecommend as exc:
            raise InvalidRequest([{"field": "curriculum", "message": str(exc)}]) from None
        return Response(recommendation_body(rec))


class BatchRecommendationsView(ApiView):
    @extend_schema(
        operation_id="recommend_batch",
        summary="Next concept for many learners",
        description=f"The single endpoint's answer for each of 1 to {serving.MAX_BATCH_LEARNERS} learners of one "
        "curriculum at one moment, among all its concepts, in one call (the active policy version answers them all in "
        "one batched computation). `results` has one item per learner sent, in order. A learner never seen is a new "
        "learner; an invalid learner id is that learner's `error` and the others are answered. The rate limit counts "
        "learners, not calls: a batch of n learners uses n requests of the per-token budget (`API_THROTTLE_RATE`; a "
        "batch larger than the whole budget uses all of it). A server process answers at most `API_BATCH_CONCURRENCY` "
        "batch requests at once (default 1), so that batches cannot hold every server thread while reviews wait; "
        "one more gets a `503` with `Retry-After` and uses none of the budget, at once or, where the server lets "
        "`API_BATCH_QUEUE` batches wait for a slot, after at most `API_BATCH_QUEUE_MS`.",
        request={"application/json": BatchRecommendationRequestSerializer},
        responses={200: BatchRecommendationResultSerializer, **BATCH_ERRORS},
        parameters=HEADERS,
        examples=[
            OpenApiExample("request", request_only=True,
                           value={"curriculum": "demo", "learners": ["u-42", "u-43", " "]}),
            OpenApiExample("answers", response_only=True, status_codes=["200"], value={"results": [
                {"learner": "u-42", "concept": "c3", "scores": {"c1": 0.12, "c3": 0.71, "c4": 0.17},
                 "policy": {"version": 4}, "strategy": "policy", "unscored": []},
                {"learner": "u-43", "concept": "c1", "scores": {"c1": 0.64, "c3": 0.2, "c4": 0.16},
                 "policy": {"version": 4}, "strategy": "policy", "unscored": []},
                {"learner": " ", "error": {"message": "learners[2]: this field is required (a non-blank learner id)",
                                           "fields": [{"field": "learners[2]",
                                                       "message": "this field is required (a non-blank learner id)"}]}},
            ]}),
        ],
    )
    def post(self, request: Request) -> Response:
        valid, errors = validate(BatchRecommendationRequestSerializer, request.data)
        if errors is not None:
            raise InvalidRequest(field_errors(errors))
        sent = valid["learners"]
        ids: list[str | None] = []
        errors: dict[int, dict[str, Any]] = {}
        for index, raw in enumerate(sent):
            try:
                ids.append(check_learner_id(raw, field=f"learners[{index}]"))
            except ReviewValidationError as exc:
                ids.append(None)
                error = exc.errors[0]
                errors[index] = {"message": f"{error['field']}: {error['message']}", "fields": [error]}
        known = [learner for learner in ids if learner is not None]
        try:
            answers = iter(serving.recommend_batch(curriculum=valid["curriculum"], learners=known,
                                                   at=valid.get("at")))
        except (serving.UnknownCurriculum, serving.NothingToRecommend) as exc:
            raise InvalidRequest([{"field": "curriculum", "message": str(exc)}]) from None
        results = []
        for index, raw in enumerate(sent):
            if index in errors:
                shown = raw if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
                results.append({"learner": shown, "error": errors[index]})
            else:
                results.append({"learner": raw, **recommendation_body(next(answers))})
        return Response({"results": results})

    # Load shedding (curriculum/api/concurrency.py): a slot is taken after authentication and permissions, before
    # the rate limit (a refused batch uses none of the budget), and given back however the request ends.
    _holds_slot = False
    _shed = False

    def check_throttles(self, request: Request) -> None:
        if batch_requests.queue():  # over its budget already (by this process's counts): 429 before any wait
            for throttle in self.get_throttles():
                if hasattr(throttle, "refused_locally") and throttle.refused_locally(request, self):
                    self.throttled(request, throttle.wait())
        if not batch_requests.acquire():
            self._shed = True
            queued = (f" and {batch_requests.queue()} may wait {batch_requests.queue_wait_s() * 1000:.0f} ms for one "
                      "(API_BATCH_QUEUE, API_BATCH_QUEUE_MS): the queue was full or the wait ran out"
                      if batch_requests.queue() and batch_requests.queue_wait_s() > 0 else "")
            raise ServerBusy(f"this server process is already answering {batch_requests.limit()} batch request(s) "
                             f"(API_BATCH_CONCURRENCY){queued}; retry in {BUSY_RETRY_AFTER_S} s",
                             wait=BUSY_RETRY_AFTER_S)
        self._holds_slot = True
        super().check_throttles(request)

    def dispatch(self, request, *args, **kwargs):
        try:
            response = super().dispatch(request, *args, **kwargs)
        finally:
            if self._holds_slot:
                self._holds_slot = False
                batch_requests.release()
        if self._shed:
            # A shed request is the server working as configured, not a failure: logged once at WARNING here
            # (log_response marks the response logged), where Django would log every 5xx at ERROR.
            log_response("Batch request shed (API_BATCH_CONCURRENCY %s, API_BATCH_QUEUE %s): %s",
                         batch_requests.limit(), batch_requests.queue(), request.path, response=response,
                         request=request, level="warning")
        return response

    def throttle_cost(self, request: Request) -> int:
        """Units of the per-token budget this request uses: one per learner sent (TokenRateThrottle); one for a list
        longer than serving.MAX_BATCH_LEARNERS, which is refused with a 400 and answers no learner (it used the
        budget of every learner it named, and one longer than the budget was a 429 before its 400)."""
        learners = request.data.get("learners") if isinstance(request.data, dict) else None
        if not isinstance(learners, list) or len(learners) > serving.MAX_BATCH_LEARNERS:
            return 1
        return len(learners)


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
            503: ERRORS[503],
        },
        parameters=HEADERS,
    )
    def get(self, request: Request, key: str) -> Response:
        try:
            check_curriculum_key(key)
        except ValueError as exc:  # never a curriculum (a NUL byte, '../evil'): not looked up
            raise NotFoundField([{"field": "key", "message": str(exc)}]) from None
        curriculum = Curriculum.objects.filter(key=key).first()
        if curriculum is None:
            raise NotFoundField([{"field": "key", "message": f"unknown curriculum {key!r}"}])
        policy = active_policy(curriculum=curriculum)
        if policy is None:
            raise NotFoundField([{"field": "key", "message": f"curriculum {key!r} has no active policy version"}])
        policy.curriculum = curriculum
        return Response(render(ActivePolicySerializer, policy))


GET_ERRORS = {401: ERRORS[401], 429: ERRORS[429], 503: ERRORS[503]}


class ExperimentsView(ApiView):
    @extend_schema(
        operation_id="list_experiments",
        summary="Experiments",
        description="Every experiment between policy versions, newest first: arms (version, control, traffic split), "
        "mode and status. `?curriculum=KEY` keeps one curriculum's.",
        parameters=[*HEADERS, OpenApiParameter("curriculum", OpenApiTypes.STR, OpenApiParameter.QUERY,
                                               description="A curriculum key: only its experiments.")],
        responses={200: ExperimentListSerializer, 400: ERRORS[400], **GET_ERRORS},
    )
    def get(self, request: Request) -> Response:
        experiments = Experiment.objects.select_related("curriculum").prefetch_related("arms__policy")
        key = request.query_params.get("curriculum")
        if key is not None:
            try:
                check_curriculum_key(key)
            except ValueError as exc:
                raise InvalidRequest([{"field": "curriculum", "message": str(exc)}]) from None
            experiments = experiments.filter(curriculum__key=key)
        return Response(render(ExperimentListSerializer, {"experiments": list(experiments)}))


class ExperimentView(ApiView):
    @extend_schema(
        operation_id="experiment",
        summary="One experiment with its outcomes",
        description="An experiment's arms, split and status, and per arm the outcomes of the reviews that followed its "
        "recommendations (recall at the next review, estimated recall at the horizon, reviews per learner, each with "
        "a 95% interval), and each candidate's difference from the control with the learners still needed. An arm's "
        "`decisions`, `shadow_decisions` and `learners` count the whole arm; the three outcomes read at most "
        f"{MAX_LEARNERS_PER_ARM:,} learners per arm (`MAX_LEARNERS_PER_ARM`): above that, a uniform random sample of "
        "the arm's learners, seeded by the experiment's id, so an outcome's `learners` below the arm's says that it "
        "is the sample's mean and interval. No off-policy estimates here (the orchestrator's experiment page shows "
        f"them, on at most {MAX_DECISIONS:,} logged decisions: above that, a uniform seeded sample of whole learners).",
        parameters=HEADERS,
        responses={200: ExperimentDetailSerializer, 404: OpenApiResponse(
            ErrorSerializer, description="No experiment with that id; `fields` names `id`."), **GET_ERRORS},
    )
    def get(self, request: Request, experiment_id: int) -> Response:
        experiment = Experiment.objects.select_related("curriculum").filter(pk=experiment_id).first()
        if experiment is None:
            raise NotFoundField([{"field": "id", "message": f"no experiment {experiment_id}"}])
        experiment.outcomes = experiment_outcomes(experiment=experiment).to_dict()
        return Response(render(ExperimentDetailSerializer, experiment))
