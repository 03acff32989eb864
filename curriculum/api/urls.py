"""API routes (mounted under /api/): v1 endpoints, the OpenAPI schema and its interactive docs."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer

from . import schema  # noqa: F401 - registers the token scheme's OpenAPI description (drf-spectacular extension)
from .errors import exception_handler
from .views import (
    ActivePolicyView, BatchRecommendationsView, ExperimentsView, ExperimentView, RecommendationsView, ReviewsView,
)


def _api_errors(view_class: type) -> type:
    """The schema and docs views, answering errors (405, 401...) in the API's JSON shape as the v1 views do
    (whatever their own renderer: YAML, HTML)."""

    def handle_exception(self, exc):
        response = view_class.handle_exception(self, exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return response

    return type(view_class.__name__, (view_class,), {
        "get_exception_handler": lambda self: exception_handler, "handle_exception": handle_exception,
    })


urlpatterns = [
    path("v1/reviews", ReviewsView.as_view(), name="api-reviews"),
    path("v1/recommendations", RecommendationsView.as_view(), name="api-recommendations"),
    path("v1/recommendations/batch", BatchRecommendationsView.as_view(), name="api-recommendations-batch"),
    path("v1/curricula/<str:key>/policy", ActivePolicyView.as_view(), name="api-active-policy"),
    path("v1/experiments", ExperimentsView.as_view(), name="api-experiments"),
    path("v1/experiments/<int:experiment_id>", ExperimentView.as_view(), name="api-experiment"),
    path("schema/", _api_errors(SpectacularAPIView).as_view(), name="api-schema"),
    path("docs/", _api_errors(SpectacularSwaggerView).as_view(url_name="api-schema"), name="api-docs"),
    path("docs/redoc/", _api_errors(SpectacularRedocView).as_view(url_name="api-schema"), name="api-redoc"),
]
