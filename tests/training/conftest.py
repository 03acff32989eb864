"""Fixtures shared by the training app's tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def curriculum(make_curriculum):
    """The curriculum the job tests launch for: "algebra", 5 concepts."""
    return make_curriculum("algebra", concepts=5)


@pytest.fixture
def sent(monkeypatch):
    """Tasks the broker took (the Celery app's send_task recorded, nothing sent): (task name, job id)."""
    from crlsite.celery import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, args=(), **kw: calls.append((name, *args)))
    return calls
