"""Admin-side URLs of the curriculum domain."""
from django.urls import path

from . import experiment_views, views

app_name = "curriculum"
urlpatterns = [
    path("policies/<int:pk>/artifacts/<str:name>", views.policy_artifact, name="policy-artifact"),
    path("orchestrator/", views.orchestrator, name="orchestrator"),
    path("orchestrator/policies/<int:pk>/promote", views.orchestrator_promote, name="orchestrator-promote"),
    path("orchestrator/curricula/<int:pk>/rollback", views.orchestrator_rollback, name="orchestrator-rollback"),
    path("orchestrator/curricula/<int:pk>/compare", views.orchestrator_compare, name="orchestrator-compare"),
    path("orchestrator/policies/<int:pk>/evaluate", views.orchestrator_evaluate, name="orchestrator-evaluate"),
    path("orchestrator/policies/<int:pk>/description", views.orchestrator_describe, name="orchestrator-describe"),
    path("orchestrator/curricula/<int:pk>/protocol", views.orchestrator_protocol, name="orchestrator-protocol"),
    path("orchestrator/curricula/<int:pk>/experiments", experiment_views.experiments, name="experiments"),
    path("orchestrator/experiments/<int:pk>", experiment_views.experiment, name="experiment"),
    path("orchestrator/experiments/<int:pk>/action", experiment_views.experiment_action, name="experiment-action"),
]
