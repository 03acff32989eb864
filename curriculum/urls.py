"""Admin-side URLs of the curriculum domain."""
from django.urls import path

from . import views

app_name = "curriculum"
urlpatterns = [
    path("policies/<int:pk>/artifacts/<str:name>", views.policy_artifact, name="policy-artifact"),
]
