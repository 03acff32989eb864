"""`setup_demo` (run by `make run`): the demo curriculum, a trained and promoted policy, a one-time admin login."""
from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from curriculum import services
from curriculum.management.commands import setup_demo
from curriculum.models import Curriculum, PolicyModel, PromotionEvent

pytestmark = [pytest.mark.django_db, pytest.mark.trains]


@pytest.mark.trains
def test_setup_demo_trains_a_policy_once_promotes_it_through_the_gate_and_prints_a_working_login(
    monkeypatch, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(setup_demo, "DEMO_TRAINING", [
        "--num_users", "20", "--interactions", "25", "--epochs", "1", "--batch_size", "16", "--eval_students", "4",
    ])
    out = io.StringIO()
    call_command("setup_demo", stdout=out, stderr=io.StringIO())

    demo = Curriculum.objects.get(key="demo")
    assert demo.concepts.count() == 20
    policy = PolicyModel.objects.get(curriculum=demo)
    assert policy.version == 1
    # A model this small may evaluate below random: the gate decides, as for any version, and the output says so.
    verdict = services.promotion_gate(candidate=policy, active=None)
    if verdict.passes:
        assert policy.status == PolicyModel.Status.ACTIVE and "Promoted demo v1" in out.getvalue()
        assert PromotionEvent.objects.get(curriculum=demo).reason == setup_demo.DEMO_REASON
    else:
        assert policy.status == PolicyModel.Status.CANDIDATE and "demo v1 stays a candidate" in out.getvalue()
        assert not PromotionEvent.objects.exists()
    password = re.search(r"Admin login: admin / (\S+)", out.getvalue()).group(1)
    assert len(password) >= 12 and authenticate(username="admin", password=password) is not None
    assert list(tmp_path.iterdir()) == []  # the training folder is gone; the artifacts live in the storage

    again = io.StringIO()
    call_command("setup_demo", stdout=again, stderr=io.StringIO())
    assert ("Active policy: demo v1." in again.getvalue() if verdict.passes else "demo v1 is a candidate version" in again.getvalue())
    assert "Admin login" not in again.getvalue()
    assert PolicyModel.objects.count() == 1
