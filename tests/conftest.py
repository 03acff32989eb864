"""Shared fixtures: artifact storage in a temporary folder, curricula with concepts, stored policy versions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _artifact_storage(request, tmp_path_factory):
    """Every test that touches Django gets its own artifact storage folder."""
    if not request.config.pluginmanager.hasplugin("django"):  # the rl core's tests run without Django
        yield None
        return
    settings = request.getfixturevalue("settings")
    root = tmp_path_factory.mktemp("artifacts")
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    yield root


@pytest.fixture
def make_curriculum(db):
    from curriculum.services import ensure_curriculum

    def make(key: str = "demo", concepts: int = 5):
        return ensure_curriculum(key=key, name=key.title(), concept_keys=[f"c{i}" for i in range(concepts)])

    return make


@pytest.fixture
def fake_artifact_dir(tmp_path):
    """A folder with the three artifact files (content irrelevant to the registry's integrity checks)."""

    def make(tag: str = "a") -> Path:
        folder = tmp_path / f"artifacts-{tag}"
        folder.mkdir()
        (folder / "dt_model.pt").write_bytes(b"checkpoint " + tag.encode())
        (folder / "dt_lite_weights.npz").write_bytes(b"weights " + tag.encode())
        (folder / "dt_lite_config.json").write_text(json.dumps({"tag": tag}))
        return folder

    return make


@pytest.fixture
def make_policy(fake_artifact_dir):
    from curriculum.services import register_policy

    def make(curriculum, *, recall: float | None = 0.5, tag: str | None = None):
        metrics = {} if recall is None else {"metric": "mean_final_recall", "results": {"dt": {"mean": recall, "ci95": [recall - 0.01, recall + 0.01]}}}
        n = curriculum.policies.count() + 1
        return register_policy(
            curriculum=curriculum, artifact_dir=fake_artifact_dir(tag or f"{curriculum.key}-{n}"), config={"v": n}, metrics=metrics
        )

    return make
