"""Files on local disk (Django's `FileSystemStorage`, its `location` the root).

A key that holds no file gets the staged bytes as a hard link (which never replaces what another
writer put there meanwhile), a key that holds one gets them by a rename; data and directories
are fsynced before a document names them, so a document never points at bytes a power loss could
take back. No key is read, written or deleted through a symbolic link: every component below the
root must be a plain file or directory. Copies and fsyncs run off gevent's loop
(`images.runtime.offload`): a file of up to MAX_UPLOAD_SIZE takes a while to write.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from typing_extensions import override

from images.core.paths import RESERVED_PREFIX
from images.runtime.offload import run_each_off_loop, run_off_loop, run_off_loop_if_large
from images.store.files.base import (
    CHUNK_SIZE,
    FileStore,
    ReferencedKeys,
    StoredFile,
    UnsafeKey,
    handle_chunks,
    is_storable_key,
    new_staging_key,
)

# How many times a write makes its folders again when a deleter removed them meanwhile.
FOLDER_ATTEMPTS = 5

# Filesystems without hard links (FAT, some network mounts) answer these to os.link.
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _stored_file(info: os.stat_result) -> StoredFile:
    modified = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
    etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
    return StoredFile(size=info.st_size, modified=modified, etag=etag)


T = TypeVar("T")

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
    """Files below a root on local disk: hard links, renames, fsync, and no key through a
    symbolic link. Files are opened where they lie (sendfile downloads), free space is that of
    the disk, and an upload's temporary file is renamed in when it is on the same disk."""

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

    @override
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

    def _in_folder(self, target: Path, act: Callable[[], T]) -> T:
        """`act` on `target` once its folders exist. A deleter removes a folder it emptied, so
        one may go between the two: it is made again, a few times."""
        for _ in range(FOLDER_ATTEMPTS - 1):
            self._make_parents(target)
            try:
                return act()
            except FileNotFoundError:
                if target.parent.exists():
                    raise  # what is missing is the source
        self._make_parents(target)
        return act()

    def _write_atomically(self, key: str, write: Callable[[Path], object]) -> None:
        """`write` fills a temporary file beside the target, which is then renamed into place."""
        target = self.path(key)
        # Of fixed length: a name of up to NAME_MAX bytes must still leave room for it.
        temporary = target.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            self._in_folder(temporary, lambda: write(temporary))
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    @override
    def save(self, key: str, source: IO[bytes]) -> None:
        size = _remaining(source)
        self._write_atomically(
            key, lambda temporary: run_off_loop_if_large(size, _copy_into, source, temporary)
        )

    @override
    def save_path(self, key: str, source_path: str) -> None:
        self._write_atomically(
            key,
            lambda temporary: run_off_loop_if_large(
                _size_of(Path(source_path)), shutil.copyfile, source_path, temporary
            ),
        )

    @override
    def stage(self, source: IO[bytes], staging: str) -> None:
        """Written in place: a staging key is its writer's alone until a lease names it."""
        target = self.path(staging)
        size = _remaining(source)
        try:
            # Up to MAX_UPLOAD_SIZE: a big one is copied off the loop.
            self._in_folder(target, lambda: run_off_loop_if_large(size, _copy_into, source, target))
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    @property
    @override
    def adopts_local_files(self) -> bool:
        return True

    @override
    def stage_path(self, source_path: str, staging: str) -> None:
        """Rename a temporary file in when it is on the same filesystem, else copy it."""
        target = self.path(staging)
        try:
            self._in_folder(target, lambda: os.replace(source_path, target))
        except OSError:
            self.save_path(staging, source_path)
            return
        os.chmod(target, 0o644)

    @override
    def link_if_absent(self, staging: str, key: str) -> bool | None:
        """A hard link, which fails, replacing nothing, when a file (or a folder: a path
        conflict) is at the key."""
        source = self.path(staging)
        target = self.path(key)
        try:
            self._in_folder(target, lambda: os.link(source, target, follow_symlinks=False))
        except FileExistsError:
            if target.is_dir() and not target.is_symlink():
                raise IsADirectoryError(key) from None
            return False
        except OSError as error:
            if error.errno in NO_HARD_LINKS:
                return None
            raise
        return True

    @override
    def make_durable(self, keys: Collection[str]) -> None:
        """The files' data, then their folders, each fsync on a native thread of its own: the
        file system commits fsyncs that wait together in one journal commit, and on
        journalling file systems a file's fsync also commits the link made before it."""
        if not settings.STORAGE_FSYNC or not keys:
            return
        paths = [self.path(key) for key in keys]
        run_each_off_loop(_fsync_file, paths)
        run_each_off_loop(_fsync_directory, sorted({path.parent for path in paths}))

    @override
    def unlink_staging(self, staging: str) -> None:
        self.path(staging).unlink(missing_ok=True)

    @override
    def promote(self, staging: str, key: str, size: int) -> None:
        source = self.path(staging)
        target = self.path(key)
        # Replacing a big file frees its blocks (100 MB: tens of milliseconds or more).
        largest = max(size, _size_of(target) or 0)
        self._in_folder(target, lambda: run_off_loop_if_large(largest, os.replace, source, target))
        sync_directory(target.parent)
        # Staged bytes already linked at the key: the rename did nothing (POSIX), so the staging
        # name is still there.
        source.unlink(missing_ok=True)

    @override
    def same_file(self, staging: str, key: str) -> bool:
        try:
            staged = os.stat(self.path(staging), follow_symlinks=False)
            stored = os.stat(self.path(key), follow_symlinks=False)
        except (UnsafeKey, FileNotFoundError, NotADirectoryError):
            return False
        return (staged.st_dev, staged.st_ino) == (stored.st_dev, stored.st_ino)

    @override
    def remove_unreferenced(self, keys: Iterable[str], referenced: ReferencedKeys) -> list[str]:
        """Here the writer of a new key takes no lease (`FileWriter.create`): it links its bytes
        to the key the moment the key is free and inserts its document after. So each file is
        first moved aside, and only then are the documents asked: a document inserted before
        the question is seen, and the file put back; one inserted after it finds its file gone
        when its writer checks, and that writer puts it back."""
        moved = (self._move_aside(key) for key in keys if is_storable_key(key))
        aside = dict(filter(None, moved))
        used = referenced(list(aside)) if aside else {}
        for key, tomb in aside.items():
            if key in used:
                self._put_back(tomb, key, used[key])
            else:
                self.delete(tomb)
                self._remove_empty_parents(self.path(key).parent)
        return [key for key in aside if key not in used]

    def _move_aside(self, key: str) -> tuple[str, str] | None:
        """Rename the file of `key` to a new staging key; None when there is no file."""
        try:
            target = self.path(key)
            if not stat.S_ISREG(os.stat(target, follow_symlinks=False).st_mode):
                return None
        except (UnsafeKey, FileNotFoundError, NotADirectoryError):
            return None
        tomb = new_staging_key()
        place = self.path(tomb)
        try:
            self._in_folder(place, lambda: os.rename(target, place))
        except FileNotFoundError:
            return None
        return key, tomb

    def _put_back(self, tomb: str, key: str, sha256: str | None) -> None:
        """The file of a key a document references again: linked back, unless its writer put
        its bytes there already. While the file was aside, another writer may also have linked
        bytes whose document cannot be inserted (the key has one): those are replaced when the
        moved file is the document's."""
        target = self.path(key)
        try:
            self._in_folder(target, lambda: os.link(self.path(tomb), target, follow_symlinks=False))
        except FileExistsError:
            if sha256 is not None and self._sha256_or_none(tomb) == sha256 != self._sha256_or_none(
                key
            ):
                self.promote(tomb, key, _size_of(self.path(tomb)) or 0)
                return
        else:
            sync_directory(target.parent)
        self.delete(tomb)

    @override
    def sha256(self, key: str) -> str:
        """A big file is hashed off gevent's loop."""
        with self.open(key) as handle:
            size = os.fstat(handle.fileno()).st_size
            return run_off_loop_if_large(size, hashlib.file_digest, handle, "sha256").hexdigest()

    def _sha256_or_none(self, key: str) -> str | None:
        try:
            return self.sha256(key)
        except (UnsafeKey, FileNotFoundError, NotADirectoryError):
            return None

    @override
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

    @override
    def open_file(self, key: str) -> IO[bytes]:
        return self.open(key)

    @override
    def open_read(self, key: str) -> tuple[IO[bytes], StoredFile] | None:
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

    @override
    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.open(key) as handle:
            yield from handle_chunks(handle, start, end)

    @override
    def delete(self, key: str) -> None:
        try:
            target = self.path(key)
        except UnsafeKey:
            return
        # The last link of a big file: its blocks are freed.
        run_off_loop_if_large(_size_of(target), _unlink, target)
        self._remove_empty_parents(target.parent)

    @override
    def is_symlink(self, key: str) -> bool:
        return (self.root / key).is_symlink()

    @override
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
            if _is_service_area(folder.resolve().relative_to(root)):
                return  # staging and thumbnails: written all the time, kept
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    @override
    def iter_all_keys(self) -> Iterator[str]:
        """Files and symbolic links (to folders too: they are listed, never walked into)."""
        return self._walk(self.root)

    @override
    def iter_keys_under(self, prefix: str) -> Iterator[str]:
        """Nothing when a folder of `prefix` is a symbolic link (`iter_all_keys` lists it)."""
        if _reaches_through_link(self.real_root, prefix.split("/")):
            return iter(())
        return self._walk(self.root / prefix)

    def _walk(self, top: Path) -> Iterator[str]:
        for folder, subfolders, files in os.walk(top):
            relative = Path(folder).relative_to(self.root).as_posix()
            links = [d for d in subfolders if os.path.islink(os.path.join(folder, d))]
            for name in [*files, *links]:
                yield name if relative == "." else f"{relative}/{name}"

    @override
    def iter_keys(self) -> Iterator[str]:
        for folder, subfolders, files in os.walk(self.root):
            relative = Path(folder).relative_to(self.root).as_posix()
            if relative == ".":
                subfolders[:] = [d for d in subfolders if d != RESERVED_PREFIX]
            for name in files:
                yield name if relative == "." else f"{relative}/{name}"

    @override
    def free_bytes(self) -> int | None:
        """Free bytes on the disk of the root; None when the disk cannot be asked."""
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return None

    @override
    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError("uploads directory is not writable")


def _is_service_area(folder: Path) -> bool:
    """`.imagestore` itself or one of its areas (`staging`, `thumbnails`)."""
    return folder.parts[:1] == (RESERVED_PREFIX,) and len(folder.parts) <= 2


def _size_of(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except OSError:
        return None


def _remaining(source: IO[bytes]) -> int | None:
    """The bytes left to read in `source` (None when it cannot seek)."""
    try:
        position = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return end - position


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _copy_into(source: IO[bytes], target: Path) -> None:
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_SIZE)


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
