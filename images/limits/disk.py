"""A floor of free space on local storage: writes that would leave less than
STORAGE_MIN_FREE_SPACE are refused (507) before they start, readiness reports the storage as
full below it, and a disk that fills anyway answers 507 (see `images.api.errors`)."""

from __future__ import annotations

from django.conf import settings

from images.core.errors import InsufficientStorage
from images.store.files import FileStore


def ensure_room(files: FileStore, needed: int) -> None:
    """507 when writing `needed` bytes would leave less than STORAGE_MIN_FREE_SPACE free."""
    free = files.free_bytes()  # None for object storage: no such limit
    reserve = settings.STORAGE_MIN_FREE_SPACE
    if free is not None and free - needed < reserve:
        raise InsufficientStorage(
            f"The storage is full: {free} bytes free, {needed} needed and "
            f"{reserve} kept free (STORAGE_MIN_FREE_SPACE)"
        )


def is_full(files: FileStore) -> bool:
    free = files.free_bytes()
    return free is not None and free < settings.STORAGE_MIN_FREE_SPACE
