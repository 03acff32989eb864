"""The artifacts storage's guarantees: a stored file is whole or absent, a write that clearly does not fit is refused
before it starts, and a group of files (a policy version's, a dataset's) is stored together or not at all.

* ``WholeFileSystemStorage``, the local default of ``STORAGES["artifacts"]``: a file is written under the storage's
  ``.partial/`` folder, flushed, then hard-linked to its name (never replacing a file; the name's folder is created
  first) and the partial file removed, so that a full disk, a crash or a kill leaves no truncated artifact, only a
  partial file that the next write sweeps once it is PARTIAL_MAX_AGE_S old. Before writing it checks the free space
  (``check_free_space``). An object store (django-storages' S3) needs none of this: an object is stored whole by
  its PUT (a multipart upload that fails is aborted), and it has no free space to ask.
* ``StorageFull``: what every refusal and a write that ran out of space raise (an OSError with ENOSPC), with a
  message the operator acts on: where, how much is free, how much was needed.
* ``saving_together``: files saved in the block are deleted again when the block raises, e.g. when the row that
  records them fails (upload first, then record); ``remove_leftovers`` deletes what a registration that was rolled
  back after storing its files left in a folder no committed row names.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage

log = logging.getLogger(__name__)

PARTIAL_FOLDER = ".partial"
PARTIAL_MAX_AGE_S = 3600.0  # a partial file this old belongs to a write that died (a write in progress keeps it fresh)


class StorageFull(OSError):
    """Not enough space in a storage: the write was refused before it started, or ran out of space and was undone."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def reserve_bytes() -> int:
    """Bytes a write must leave free (settings.CRL_STORAGE_RESERVE_BYTES): a disk filled to the last byte stops the
    database and the logs too."""
    return int(getattr(settings, "CRL_STORAGE_RESERVE_BYTES", 16 << 20))


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _disk_free(path: str) -> int:
    """Free bytes for an unprivileged writer on the filesystem of ``path`` (a seam: tests make a disk full)."""
    return shutil.disk_usage(path).free


def free_bytes(storage: Storage) -> int | None:
    """Free bytes where ``storage`` writes, or None when it has no local folder (an object store)."""
    location = getattr(storage, "location", None)
    if not isinstance(storage, FileSystemStorage) or not location:
        return None
    os.makedirs(location, exist_ok=True)
    return _disk_free(location)


def check_free_space(storage: Storage, *, needed: int, what: str) -> None:
    """Raise StorageFull unless ``storage`` has ``needed`` bytes free beyond the reserve (nothing to check for an
    object store). ``what`` names what would be written, e.g. "curriculum demo v3's artifacts"."""
    free = free_bytes(storage)
    if free is not None:
        _refuse_unless_free(free=free, needed=needed, what=what, where=f"the artifact storage ({storage.location})",
                            fix="or point MEDIA_ROOT / ARTIFACT_STORAGE_BACKEND elsewhere")


def check_free_folder(path: str, *, needed: int, what: str) -> None:
    """Raise StorageFull unless the local folder ``path`` (e.g. the temporary folder a training run writes its
    artifacts to first) has ``needed`` bytes free beyond the reserve."""
    _refuse_unless_free(free=_disk_free(path), needed=needed, what=what, where=f"the local folder {path}",
                        fix="or set TMPDIR to a folder with room")


def _refuse_unless_free(*, free: int, needed: int, what: str, where: str, fix: str) -> None:
    if free - needed >= reserve_bytes():
        return
    raise StorageFull(
        f"not enough space in {where} for {what}: {_mib(free)} free, {_mib(needed)} needed and "
        f"{_mib(reserve_bytes())} kept free (CRL_STORAGE_RESERVE_BYTES); nothing was written: free some space there "
        f"({fix}) and retry"
    )


def size_of(content: File) -> int | None:
    """The size of what is about to be saved, or None when it cannot be told without reading it."""
    try:
        return int(content.size)
    except (AttributeError, TypeError, ValueError, OSError):
        return None


class WholeFileSystemStorage(FileSystemStorage):
    """Django's FileSystemStorage, but a saved file is whole or absent and a write that does not fit is refused
    first (see the module). Names, permissions and the free-name rule (``get_available_name``) are Django's."""

    def _save(self, name: str, content: File) -> str:
        size = size_of(content)
        if size is not None:
            check_free_space(self, needed=size, what=name)
        partial_dir = os.path.join(self.location, PARTIAL_FOLDER)
        os.makedirs(partial_dir, exist_ok=True)
        _sweep_partials(partial_dir)
        fd, partial = tempfile.mkstemp(dir=partial_dir, prefix=os.path.basename(name)[:60] + ".", suffix=".part")
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in content.chunks():
                        out.write(chunk if isinstance(chunk, bytes) else chunk.encode())
                    out.flush()
                    os.fsync(out.fileno())
                return self._place(partial, name)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not isinstance(exc, StorageFull):
                    free = free_bytes(self) or 0
                    raise StorageFull(
                        f"the artifact storage ({self.location}) ran out of space writing {name} ({_mib(free)} free now); "
                        "nothing was kept: free some space there and retry"
                    ) from exc
                raise
        finally:
            try:
                os.unlink(partial)
            except FileNotFoundError:
                pass

    def _place(self, partial: str, name: str) -> str:
        """Give the whole file at ``partial`` its name (a free one, Django's rule), never replacing another file."""
        while True:
            full_path = self.path(name)
            directory = os.path.dirname(full_path)
            if self.directory_permissions_mode is not None:
                from django.utils._os import safe_makedirs

                safe_makedirs(directory, self.directory_permissions_mode, exist_ok=True)
            else:
                os.makedirs(directory, exist_ok=True)
            try:
                if self._allow_overwrite:
                    os.replace(partial, full_path)
                else:
                    os.link(partial, full_path)  # fails if the name is taken: no other file is ever replaced
                break
            except FileExistsError:
                name = self.get_available_name(name)
        if self.file_permissions_mode is not None:
            os.chmod(full_path, self.file_permissions_mode)
        self._ensure_location_group_id(full_path)
        return os.path.relpath(full_path, self.location).replace("\\", "/")


def _sweep_partials(partial_dir: str) -> None:
    """Remove partial files of writes that died (older than PARTIAL_MAX_AGE_S)."""
    cutoff = time.time() - PARTIAL_MAX_AGE_S
    with os.scandir(partial_dir) as entries:
        for entry in entries:
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    log.info("removed the partial file %s of a write that died", entry.name)
            except FileNotFoundError:
                pass


@contextmanager
def saving_together(storage: Storage) -> Iterator[Callable[[str, File], str]]:
    """``with saving_together(storage) as save: save(name, content) ...``: ``save`` stores a file (returning its
    stored name); when the block raises, every file it stored is deleted again and the exception goes on. Record the
    files (the row that names them) inside the block: stored first, recorded second, nothing left if either fails."""
    saved: list[str] = []

    def save(name: str, content: File) -> str:
        stored = storage.save(name, content)
        saved.append(stored)
        return stored

    try:
        yield save
    except BaseException:
        for stored in saved:
            try:
                storage.delete(stored)
            except Exception:  # noqa: BLE001 - a cleanup that fails must not hide why the block failed
                log.exception("could not delete %s after a failed save", stored)
        raise


def remove_leftovers(storage: Storage, folder: str) -> list[str]:
    """Delete every file in ``folder`` (not its sub-folders) and return their names: for a writer that owns the
    folder (e.g. a new version's, under the curriculum's row lock) and knows no committed row names what is there
    (a registration rolled back after storing its files)."""
    try:
        _, files = storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = [f"{folder}/{name}" for name in files]
    for name in removed:
        storage.delete(name)
    if removed:
        log.warning("removed %d file(s) a failed write left in %s: %s", len(removed), folder, ", ".join(files))
    return removed
