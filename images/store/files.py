"""All file I/O, over Django's `storages["default"]`: local disk or S3.

Keys are validated relative POSIX paths (see `images.core.paths`). An image's bytes are first
*staged* under `.imagestore/staging/<random>` and later *promoted* to their key (see
`images.writes`). On local disk a key that holds no file gets the staged bytes as a hard link
(which never replaces what another writer put there meanwhile), a key that holds one gets them
by a rename; data and directories are fsynced before a document names them, so a document never
points at bytes a power loss could take back. On S3 promotion is a server-side copy. Either way
the object at the key changes at once. On local disk no key is read, written or deleted through a
symbolic link: every component below the root must be a plain file or directory.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages

from images.core.paths import RESERVED_PREFIX, is_safe_file_path
from images.runtime.offload import run_each_off_loop, run_off_loop

CHUNK_SIZE = 256 * 1024
STAGING_PREFIX = f"{RESERVED_PREFIX}/staging"
# A single S3 CopyObject copies at most 5 GiB; larger objects go through a multipart copy.
S3_SINGLE_COPY_LIMIT = 5 * 1024**3
# Filesystems without hard links (FAT, some network mounts) answer these to os.link.
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class UnsafeKey(ValueError):
    """A key that may not be written: unsafe as a path, or reaching through a symbolic link."""


# A key whose folders collide with stored files (`a.jpg/b.jpg` beside `a.jpg`), or the reverse.
PATH_CONFLICTS = (NotADirectoryError, IsADirectoryError, FileExistsError)


def new_staging_key() -> str:
    return f"{STAGING_PREFIX}/{uuid.uuid4().hex}"


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
        return (key for key in self.iter_all_keys() if not key.startswith(f"{RESERVED_PREFIX}/"))

    def iter_all_keys(self) -> Iterator[str]:
        """Every stored object, as listed, safe or not (what `check_integrity` accounts for)."""
        raise NotImplementedError

    def check_writable(self, key: str) -> None:
        """Raise `UnsafeKey` when `key` may not be written."""
        if not is_storable_key(key):
            raise UnsafeKey(f"unsafe storage key {key!r}")

    def stage(self, source: IO[bytes], staging: str) -> None:
        """Write new bytes under a staging key (not yet durable: `make_durable` follows, on
        the staging key or on the key they are linked to, once it is known which)."""
        self.save(staging, source)

    def stage_path(self, source_path: str, staging: str) -> None:
        """Stage a file that is on local disk (it may be moved rather than copied)."""
        self.save_path(staging, source_path)

    def link_if_absent(self, staging: str, key: str) -> bool | None:
        """Give the staged bytes a second name, `key`, unless a file is there. True: linked
        (`make_durable(key)`, then `unlink_staging`); False: `key` holds a file (nothing
        changed); None: this store cannot do that (the caller asks the documents whether
        `key` is used, and promotes)."""
        return None

    def make_durable(self, keys: Collection[str]) -> None:
        """Make the bytes at `keys` and their names survive a power loss (before a document
        names them), all keys at once."""

    def unlink_staging(self, staging: str) -> None:
        """Drop the staging name of bytes linked to their key."""

    def promote(self, staging: str, key: str, size: int) -> None:
        """Replace `key` at once by the staged bytes; the staging key is gone afterwards."""
        raise NotImplementedError

    def delete_raw(self, key: str) -> bool:
        """Remove an object listed by `iter_all_keys` that is no valid key; False if refused."""
        return False

    def check(self) -> None:
        """Raise when the storage cannot be reached."""
        raise NotImplementedError


def _stored_file(info: os.stat_result) -> StoredFile:
    modified = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
    etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
    return StoredFile(size=info.st_size, modified=modified, etag=etag)


def handle_chunks(handle: IO[bytes], start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Bytes `start..end` (inclusive; `end` None: to the end) of an open file, in chunks."""
    handle.seek(start)
    remaining = None if end is None else end - start + 1
    while remaining is None or remaining > 0:
        chunk = handle.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


_real_roots: dict[str, str] = {}


def real_root_of(root: str) -> str:
    """The storage root with its own symbolic links resolved, once per process for a root that
    exists: they are the administrator's to choose (resolving them for every request cost an
    `lstat` per component of the root); what lies below the root is checked on every access."""
    real = _real_roots.get(root)
    if real is None:
        real = os.path.realpath(root)
        if os.path.isdir(real):
            _real_roots[root] = real
    return real


def _reaches_through_link(real_root: str, parts: list[str]) -> bool:
    """Whether an existing component of `parts` below `real_root` is a symbolic link (what
    `realpath(target) != target` tells, with one `lstat` per component below the root)."""
    place = real_root
    for part in parts:
        place = os.path.join(place, part)
        try:
            mode = os.lstat(place).st_mode
        except OSError:  # missing (or unreadable): nothing below it can be reached either
            return False
        if stat.S_ISLNK(mode):
            return True
    return False


class LocalFileStore(FileStore):
    def __init__(self, storage: FileSystemStorage) -> None:
        self.storage = storage
        self.root = Path(storage.location)

    @property
    def real_root(self) -> str:
        """The root with its links resolved (once per process, see `real_root_of`)."""
        return real_root_of(str(self.root))

    def path(self, key: str) -> Path:
        """The file of `key`, refused (`UnsafeKey`) when the key is unsafe or any existing
        component below the root is a symbolic link (it could lead outside the root)."""
        if not is_storable_key(key):
            raise UnsafeKey(f"unsafe storage key {key!r}")
        parts = key.split("/")
        if _reaches_through_link(self.real_root, parts):
            raise UnsafeKey(f"storage key {key!r} reaches through a symbolic link")
        return Path(os.path.join(self.real_root, *parts))

    def check_writable(self, key: str) -> None:
        """`UnsafeKey`, or one of `PATH_CONFLICTS` when a file stands where a folder must."""
        target = self.path(key)
        if target.is_dir():
            raise IsADirectoryError(key)
        real_root = Path(self.real_root)
        for folder in reversed(target.relative_to(real_root).parents):
            place = real_root / folder
            if not place.exists():
                return
            if not place.is_dir():
                raise NotADirectoryError(key)

    def _make_parents(self, target: Path) -> None:
        """Create the missing folders of `target`, each made durable in its parent."""
        missing = []
        folder = target.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            try:
                created.mkdir()
            except FileExistsError:
                continue
            sync_directory(created.parent)

    def _write_atomically(self, key: str, write: Callable[[Path], object]) -> None:
        """`write` fills a temporary file beside the target, which is then renamed into place."""
        target = self.path(key)
        self._make_parents(target)
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

    def stage(self, source: IO[bytes], staging: str) -> None:
        """Written in place: a staging key is its writer's alone until a lease names it."""
        target = self.path(staging)
        self._make_parents(target)
        try:
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK_SIZE)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def stage_path(self, source_path: str, staging: str) -> None:
        """Rename a temporary file in when it is on the same filesystem, else copy it."""
        target = self.path(staging)
        self._make_parents(target)
        try:
            os.replace(source_path, target)
        except OSError:
            self.save_path(staging, source_path)
            return
        os.chmod(target, 0o644)

    def link_if_absent(self, staging: str, key: str) -> bool | None:
        """A hard link, which fails, replacing nothing, when a file (or a folder: a path
        conflict) is at the key."""
        source = self.path(staging)
        target = self.path(key)
        self._make_parents(target)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            if target.is_dir() and not target.is_symlink():
                raise IsADirectoryError(key) from None
            return False
        except OSError as error:
            if error.errno in NO_HARD_LINKS:
                return None
            raise
        return True

    def make_durable(self, keys: Collection[str]) -> None:
        """The files' data, then their folders, each fsync on a native thread of its own: the
        file system commits fsyncs that wait together in one journal commit, and on
        journalling file systems a file's fsync also commits the link made before it."""
        if not settings.STORAGE_FSYNC or not keys:
            return
        paths = [self.path(key) for key in keys]
        run_each_off_loop(_fsync_file, paths)
        run_each_off_loop(_fsync_directory, sorted({path.parent for path in paths}))

    def unlink_staging(self, staging: str) -> None:
        self.path(staging).unlink(missing_ok=True)

    def promote(self, staging: str, key: str, size: int) -> None:
        source = self.path(staging)
        target = self.path(key)
        self._make_parents(target)
        os.replace(source, target)
        sync_directory(target.parent)

    def stat(self, key: str) -> StoredFile | None:
        try:
            info = self.path(key).stat()
        except UnsafeKey:
            return None
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _stored_file(info)

    def open(self, key: str) -> IO[bytes]:
        return open(self.path(key), "rb")

    def open_stored(self, key: str) -> tuple[IO[bytes], StoredFile] | None:
        """The file of `key`, opened, and what the open file is (size, time, ETag): the bytes
        read are those described even when the key is replaced meanwhile. None when missing
        or unsafe."""
        try:
            handle = self.open(key)
        except (UnsafeKey, FileNotFoundError, NotADirectoryError):
            return None
        try:
            return handle, _stored_file(os.fstat(handle.fileno()))
        except BaseException:
            handle.close()
            raise

    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.open(key) as handle:
            yield from handle_chunks(handle, start, end)

    def delete(self, key: str) -> None:
        try:
            target = self.path(key)
        except UnsafeKey:
            return
        target.unlink(missing_ok=True)
        self._remove_empty_parents(target.parent)

    def delete_raw(self, key: str) -> bool:
        """Unlink a listed entry (a symbolic link itself, never what it points to), refused
        when a folder above it is reached through a link."""
        real_root = self.real_root
        folder, _, name = key.rpartition("/")
        parent = os.path.join(real_root, *folder.split("/")) if folder else real_root
        if os.path.realpath(parent) != parent or name in ("", ".", ".."):
            return False
        try:
            os.unlink(os.path.join(parent, name))
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    def _remove_empty_parents(self, folder: Path) -> None:
        root = self.root.resolve()
        while folder.resolve() != root and root in folder.resolve().parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def iter_all_keys(self) -> Iterator[str]:
        """Files and symbolic links (to folders too: they are listed, never walked into)."""
        for folder, subfolders, files in os.walk(self.root):
            relative = Path(folder).relative_to(self.root).as_posix()
            links = [d for d in subfolders if os.path.islink(os.path.join(folder, d))]
            for name in [*files, *links]:
                yield name if relative == "." else f"{relative}/{name}"

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

    def delete_raw(self, key: str) -> bool:
        self.client.delete_object(Bucket=self.bucket.name, Key=key)  # S3 keys name no folders
        return True

    def promote(self, staging: str, key: str, size: int) -> None:
        source = {"Bucket": self.bucket.name, "Key": staging}
        if size < S3_SINGLE_COPY_LIMIT:
            self.client.copy_object(Bucket=self.bucket.name, Key=key, CopySource=source)
        else:
            self.client.copy(source, self.bucket.name, key, Config=self.storage.transfer_config)
        self.client.delete_object(Bucket=self.bucket.name, Key=staging)

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

    def iter_all_keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket.name):
            for item in page.get("Contents", []):
                yield item["Key"]

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket.name)


def sync_directory(path: Path) -> None:
    """Make a rename or creation in `path` durable."""
    if settings.STORAGE_FSYNC:
        run_off_loop(_fsync_directory, path)


def _fsync_file(path: Path) -> None:
    _fsync(path, os.O_RDONLY)


def _fsync_directory(path: Path) -> None:
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path, flags: int) -> None:
    """Waits for the disk: run off gevent's loop, so the worker's other requests go on."""
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def get_file_store() -> FileStore:
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        return LocalFileStore(storage)
    return S3FileStore(storage)
