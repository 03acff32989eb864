"""Top-level URLs: the admin (with the orchestrator page) and the REST API.

Django's error views answer in the API's JSON error shape under /api/ and with its usual pages elsewhere.
"""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/curriculum-ops/", include("curriculum.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("curriculum.api.urls")),
]

handler400 = "curriculum.api.errors.bad_request"
handler403 = "curriculum.api.errors.permission_denied"
handler404 = "curriculum.api.errors.page_not_found"
handler500 = "curriculum.api.errors.server_error"
