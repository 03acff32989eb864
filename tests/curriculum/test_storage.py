"""curriculum.storage and the registry on it: an artifact is whole or absent when the disk fills part-way (a real tiny
filesystem, and a storage that fails at the flush), a write that clearly does not fit is refused before it starts,
what a failed or rolled-back registration stored is gone, and the next registration succeeds under its own names."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from django.db import transaction

from curriculum import storage as artifact_files
from curriculum.models import PolicyModel
from curriculum.services import artifact_storage, register_policy
from curriculum.storage import StorageFull

pytestmark = pytest.mark.django_db
NAMES = ("dt_model.pt", "dt_lite_weights.npz", "dt_lite_config.json")


def files_under(root: Path) -> list[str]:
    """Every file in the storage, partial files included, as paths relative to its root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def artifact_dir(tmp_path: Path, *, model_bytes: int, weights_bytes: int) -> Path:
    folder = tmp_path / f"run-{model_bytes}-{weights_bytes}"
    folder.mkdir()
    (folder / "dt_model.pt").write_bytes(os.urandom(model_bytes))
    (folder / "dt_lite_weights.npz").write_bytes(os.urandom(weights_bytes))
    (folder / "dt_lite_config.json").write_text("{}")
    return folder


def register(curriculum, folder: Path):
    return register_policy(curriculum=curriculum, artifact_dir=folder, config={})


@pytest.fixture
def tiny_filesystem(tmp_path, settings):
    """A 2 MiB tmpfs mounted as the artifact storage (needs root: skipped elsewhere), unmounted at the end."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tiny tmpfs here (needs root): {exc}")
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "curriculum.storage.WholeFileSystemStorage", "OPTIONS": {"location": str(mount)}}}
    settings.CRL_STORAGE_RESERVE_BYTES = 0
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_part_way_keeps_no_half_file_and_the_next_registration_succeeds(
        tiny_filesystem, tmp_path, make_curriculum, monkeypatch):
    curriculum = make_curriculum("demo", concepts=3)
    filler = tiny_filesystem / "other-use.bin"
    filler.write_bytes(b"\0" * (1 << 20))  # 1 of the 2 MiB used by someone else
    folder = artifact_dir(tmp_path, model_bytes=600_000, weights_bytes=600_000)
    # The space check passes (as when another writer fills the disk after it): the disk itself runs out part-way.
    monkeypatch.setattr(artifact_files, "_disk_free", lambda path: 1 << 30)

    with pytest.raises(StorageFull, match="ran out of space writing policies/demo/v1/dt_lite_weights.npz"):
        register(curriculum, folder)

    assert files_under(tiny_filesystem) == ["other-use.bin"]  # no dt_model.pt, no truncated weights, no partial file
    assert not PolicyModel.objects.exists()
    filler.unlink()
    policy = register(curriculum, folder)
    assert policy.version == 1 and [policy.artifacts[n]["path"] for n in NAMES] == [f"policies/demo/v1/{n}" for n in NAMES]
    assert (tiny_filesystem / "policies/demo/v1/dt_lite_weights.npz").read_bytes() == (
        folder / "dt_lite_weights.npz").read_bytes()


def test_a_storage_that_fails_at_the_flush_leaves_nothing_and_the_next_registration_succeeds(
        make_curriculum, fake_artifact_dir, monkeypatch, _artifact_storage):
    curriculum = make_curriculum("demo", concepts=3)
    real_fsync, flushes = os.fsync, []

    def fsync(fd):
        flushes.append(fd)
        if len(flushes) == 2:  # e.g. a network filesystem that says ENOSPC when the data is flushed
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageFull):
        register(curriculum, fake_artifact_dir("a"))
    assert files_under(_artifact_storage) == [] and not PolicyModel.objects.exists()

    policy = register(curriculum, fake_artifact_dir("b"))
    assert files_under(_artifact_storage) == [f"policies/demo/v1/{n}" for n in sorted(NAMES)]
    assert policy.artifacts["dt_model.pt"]["path"] == "policies/demo/v1/dt_model.pt"


def test_a_registration_that_clearly_does_not_fit_is_refused_before_anything_is_written(
        make_curriculum, tmp_path, monkeypatch, settings, _artifact_storage):
    curriculum = make_curriculum("demo", concepts=3)
    settings.CRL_STORAGE_RESERVE_BYTES = 1 << 20
    monkeypatch.setattr(artifact_files, "_disk_free", lambda path: 13 << 20)  # the probe's 13 MB
    folder = artifact_dir(tmp_path, model_bytes=12 << 20, weights_bytes=4 << 20)

    with pytest.raises(StorageFull) as refused:
        register(curriculum, folder)

    assert str(refused.value) == (
        f"not enough space in the artifact storage ({_artifact_storage}) for curriculum demo v1's artifacts: 13.0 MiB "
        "free, 16.0 MiB needed and 1.0 MiB kept free (CRL_STORAGE_RESERVE_BYTES); nothing was written: free some space "
        "there (or point MEDIA_ROOT / ARTIFACT_STORAGE_BACKEND elsewhere) and retry")
    assert refused.value.errno == errno.ENOSPC
    assert files_under(_artifact_storage) == [] and not PolicyModel.objects.exists()


def test_what_a_rolled_back_registration_stored_is_removed_by_the_next_one(make_curriculum, fake_artifact_dir,
                                                                           _artifact_storage):
    curriculum = make_curriculum("demo", concepts=3)
    with pytest.raises(RuntimeError, match="after registering"):
        with transaction.atomic():  # e.g. the training run's row could not be updated in the same transaction
            register(curriculum, fake_artifact_dir("a"))
            raise RuntimeError("after registering")
    assert len(files_under(_artifact_storage)) == 3 and not PolicyModel.objects.exists()  # the rollback keeps files

    policy = register(curriculum, fake_artifact_dir("b"))

    assert files_under(_artifact_storage) == [f"policies/demo/v1/{n}" for n in sorted(NAMES)]  # no dt_model_x1Yz.pt
    assert artifact_storage().open(policy.artifacts["dt_model.pt"]["path"]).read() == b"checkpoint b"


def test_a_saved_file_replaces_nothing_and_partial_files_of_dead_writes_are_swept(_artifact_storage, monkeypatch):
    from django.core.files.base import ContentFile

    storage = artifact_storage()
    first = storage.save("x/a.bin", ContentFile(b"one"))
    second = storage.save("x/a.bin", ContentFile(b"two"))
    assert first == "x/a.bin" and second != first and storage.open(first).read() == b"one"

    dead = _artifact_storage / ".partial" / "a.bin.dead.part"
    dead.write_bytes(b"half")
    os.utime(dead, (0, 0))  # a write that died long ago
    storage.save("x/b.bin", ContentFile(b"three"))
    assert not dead.exists() and files_under(_artifact_storage) == ["x/a.bin", second, "x/b.bin"]
