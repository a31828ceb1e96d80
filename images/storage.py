"""All file I/O, over Django's `storages["default"]`: local disk or S3.

Keys are validated relative POSIX paths (see `images.paths`). Writes are atomic: on local
disk the bytes go to a temporary file beside the target and are renamed into place; on S3 a
single PUT (or a completed multipart upload) replaces the object at once.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from botocore.exceptions import ClientError
from django.core.files.storage import FileSystemStorage, Storage, storages

from images.paths import RESERVED_PREFIX, is_safe_file_path

CHUNK_SIZE = 256 * 1024


def is_storable_key(key: object) -> bool:
    """A user path, or a path under the service's reserved prefix; never anything else.

    Documents written by older services may hold unsafe paths (`../x`): such a key is treated
    as a missing file, never read, written or deleted.
    """
    if isinstance(key, str) and key.startswith(f"{RESERVED_PREFIX}/"):
        return is_safe_file_path(key[len(RESERVED_PREFIX) + 1 :])
    return is_safe_file_path(key)


@dataclass(frozen=True)
class StoredFile:
    size: int
    modified: dt.datetime
    etag: str


class FileStore:
    """The operations the service needs from a storage backend."""

    def save(self, key: str, source: IO[bytes]) -> None:
        raise NotImplementedError

    def save_path(self, key: str, source_path: str) -> None:
        with open(source_path, "rb") as source:
            self.save(key, source)

    def stat(self, key: str) -> StoredFile | None:
        raise NotImplementedError

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes `start..end` (inclusive) of `key`, in chunks, never the whole file at once."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove `key`; a missing file is not an error."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def iter_keys(self) -> Iterator[str]:
        """Every stored file outside the reserved prefix (temporary files of uploads included)."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise when the storage cannot be reached."""
        raise NotImplementedError


class LocalFileStore(FileStore):
    def __init__(self, storage: FileSystemStorage) -> None:
        self.storage = storage
        self.root = Path(storage.location)

    def path(self, key: str) -> Path:
        if not is_storable_key(key):
            raise ValueError(f"unsafe storage key {key!r}")
        return Path(self.storage.path(key))

    def _write_atomically(self, key: str, write: Callable[[Path], object]) -> None:
        """`write` fills a temporary file beside the target, which is then renamed into place."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Of fixed length: a name of up to NAME_MAX bytes must still leave room for it.
        temporary = target.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            write(temporary)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def save(self, key: str, source: IO[bytes]) -> None:
        def copy(temporary: Path) -> None:
            with open(temporary, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)

        self._write_atomically(key, copy)

    def save_path(self, key: str, source_path: str) -> None:
        self._write_atomically(key, lambda temporary: shutil.copyfile(source_path, temporary))

    def move_into_place(self, key: str, source_path: str) -> None:
        """Rename a temporary file into place when it is on the same filesystem, else copy."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source_path, target)
        except OSError:
            self.save_path(key, source_path)
            return
        os.chmod(target, 0o644)

    def stat(self, key: str) -> StoredFile | None:
        if not is_storable_key(key):
            return None
        try:
            info = self.path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        modified = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
        etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
        return StoredFile(size=info.st_size, modified=modified, etag=etag)

    def open(self, key: str) -> IO[bytes]:
        return open(self.path(key), "rb")

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.open(key) as handle:
            handle.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                chunk = handle.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, key: str) -> None:
        if not is_storable_key(key):
            return
        target = self.path(key)
        target.unlink(missing_ok=True)
        self._remove_empty_parents(target.parent)

    def _remove_empty_parents(self, folder: Path) -> None:
        root = self.root.resolve()
        while folder.resolve() != root and root in folder.resolve().parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def iter_keys(self) -> Iterator[str]:
        for folder, subfolders, files in os.walk(self.root):
            relative = Path(folder).relative_to(self.root).as_posix()
            if relative == ".":
                subfolders[:] = [d for d in subfolders if d != RESERVED_PREFIX]
            for name in files:
                yield name if relative == "." else f"{relative}/{name}"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError("uploads directory is not writable")


class S3FileStore(FileStore):
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.bucket = storage.bucket
        self.client = storage.connection.meta.client

    def save(self, key: str, source: IO[bytes]) -> None:
        self.bucket.upload_fileobj(source, key, Config=self.storage.transfer_config)

    def stat(self, key: str) -> StoredFile | None:
        if not is_storable_key(key):
            return None
        try:
            head = self.client.head_object(Bucket=self.bucket.name, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return StoredFile(
            size=head["ContentLength"], modified=head["LastModified"], etag=head["ETag"]
        )

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        arguments = {"Bucket": self.bucket.name, "Key": key}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end}"
        body = self.client.get_object(**arguments)["Body"]
        try:
            yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        if not is_storable_key(key):
            return
        self.client.delete_object(Bucket=self.bucket.name, Key=key)

    def presigned_url(
        self, key: str, filename_header: str, content_type: str, expires: int = 300
    ) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket.name,
                "Key": key,
                "ResponseContentDisposition": filename_header,
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires,
        )

    def iter_keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket.name):
            for item in page.get("Contents", []):
                if not item["Key"].startswith(f"{RESERVED_PREFIX}/"):
                    yield item["Key"]

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket.name)


def get_file_store() -> FileStore:
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        return LocalFileStore(storage)
    return S3FileStore(storage)
