"""All file I/O, over Django's `storages["default"]`: local disk or S3.

`base` is the interface (`FileStore`) and what its callers share; `local` and `s3` are the
backends. Callers get theirs from `get_file_store()` and never ask which it is.
"""

from typing import Any, cast

from botocore.config import Config
from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages

from images.store.files.base import (
    CHUNK_SIZE,
    PATH_CONFLICTS,
    STAGING_PREFIX,
    FileStore,
    ReferencedKeys,
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
    "ReferencedKeys",
    "S3FileStore",
    "StoredFile",
    "UnsafeKey",
    "get_file_store",
    "handle_chunks",
    "is_storable_key",
    "new_staging_key",
    "quick_file_store",
]

# A start-up check tries once and gives up quickly: serving must not wait on a slow S3.
QUICK_CLIENT = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})


def get_file_store() -> FileStore:
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        return LocalFileStore(storage)
    return S3FileStore(storage)


def quick_file_store() -> FileStore:
    """The file store, its client (on S3) trying each request once with short timeouts, for
    checks at start-up. Close it before forking."""
    default = cast(dict[str, Any], settings.STORAGES["default"])
    if default["BACKEND"] == "storages.backends.s3.S3Storage":
        options = {**default["OPTIONS"], "client_config": QUICK_CLIENT}
        return S3FileStore(storages.create_storage({**default, "OPTIONS": options}))
    return get_file_store()
