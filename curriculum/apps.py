"""App config for the curriculum domain."""
from django.apps import AppConfig


class CurriculumConfig(AppConfig):
    name = "curriculum"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Curriculum"
