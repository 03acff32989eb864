"""Top-level URLs: the admin (with the orchestrator page) and the REST API."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/curriculum-ops/", include("curriculum.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("curriculum.api.urls")),
]
