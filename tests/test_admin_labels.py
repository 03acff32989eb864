"""What an operator reads on the admin pages is words, not field names: every multi-word field of the curriculum and
training models the admin shows carries an explicit label (``verbose_name``), and a job's page shows them."""
from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import reverse

from training.models import TrainingRun

APPS = ("curriculum", "training")


def admin_fields():
    for model in admin.site._registry:
        if model._meta.app_label not in APPS:
            continue
        for field in model._meta.get_fields():
            if getattr(field, "concrete", False) and not field.auto_created:
                yield model, field


def test_every_multi_word_field_the_admin_shows_has_a_label_in_words():
    unlabelled = [f"{model.__name__}.{field.name}" for model, field in admin_fields()
                  if "_" in field.name and field._verbose_name is None]  # the label Django makes is the name
    assert unlabelled == []
    assert not [f"{model.__name__}.{field.name}" for model, field in admin_fields() if "_" in str(field.verbose_name)]


@pytest.mark.django_db
def test_a_job_page_labels_its_base_fields_in_words(admin_client, make_curriculum):
    job = TrainingRun.objects.create(curriculum=make_curriculum("algebra", concepts=5))
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[job.pk])).content.decode()
    labels = {" ".join(re.sub(r"<[^>]+>", "", label).split()).rstrip(":")
              for label in re.findall(r"<label[^>]*>(.*?)</label>", page, flags=re.S)}
    assert "Cancellation requested" in labels, labels
    assert not {"Cancel requested", "Created at", "Heartbeat at", "Loss history"} & labels, labels
