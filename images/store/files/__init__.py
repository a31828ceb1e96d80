"""All file I/O, over Django's `storages["default"]`: local disk or S3.

`base` is the interface (`FileStore`) and what its callers share; `local` and `s3` are the
backends. Callers get theirs from `get_file_store()` and never ask which it is.
"""

from django.core.files.storage import FileSystemStorage, storages

from images.store.files.base import (
    CHUNK_SIZE,
    PATH_CONFLICTS,
    STAGING_PREFIX,
    FileStore,
    StoredFile,
    UnsafeKey,
    handle_chunks,
    is_storable_key,
    new_staging_key,
)
from images.store.files.local import LocalFileStore
from images.store.files.s3 import S3FileStore

__all__ = [
    "CHUNK_SIZE",
    "PATH_CONFLICTS",
    "STAGING_PREFIX",
    "FileStore",
    "LocalFileStore",
    "S3FileStore",
    "StoredFile",
    "UnsafeKey",
    "get_file_store",
    "handle_chunks",
    "is_storable_key",
    "new_staging_key",
]


def get_file_store() -> FileStore:
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        return LocalFileStore(storage)
    return S3FileStore(storage)
