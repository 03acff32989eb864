"""WSGI entry point (gunicorn crlsite.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

from crlsite.heap import freeze_loaded_heap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
application = get_wsgi_application()
# POST /api/v1/recommendations in front of Django's handler where it can be (settings.API_LEAN_PATH)
from curriculum.api.lean_path import lean_application  # noqa: E402 - after Django's set-up

application = lean_application(application)
# Loaded once per worker (gunicorn imports this module after the fork): keep it out of the collector's full passes.
freeze_loaded_heap()
