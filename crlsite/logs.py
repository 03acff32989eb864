"""Logging filters named in settings.LOGGING."""
from __future__ import annotations

import logging


class WithoutTraceback(logging.Filter):
    """Keep a record's message, drop its traceback (``exc_info``): for errors a client causes, whose one line says
    all an operator needs (Django logs a refused Host with the traceback of its own check)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True
