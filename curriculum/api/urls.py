"""API routes (mounted under /api/): v1 endpoints, the OpenAPI schema and its interactive docs."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from .views import ActivePolicyView, RecommendationsView, ReviewsView

urlpatterns = [
    path("v1/reviews", ReviewsView.as_view(), name="api-reviews"),
    path("v1/recommendations", RecommendationsView.as_view(), name="api-recommendations"),
    path("v1/curricula/<str:key>/policy", ActivePolicyView.as_view(), name="api-active-policy"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("docs/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
