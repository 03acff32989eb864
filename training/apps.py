"""App config for the training side: jobs, Celery tasks and the learning core (rl/)."""
from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Training"
