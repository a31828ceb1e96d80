"""The file-storage interface every backend implements, and what its callers share.

Keys are validated relative POSIX paths (see `images.core.paths`). An image's bytes are first
*staged* under `.imagestore/staging/<random>` and later *promoted* to their key (see
`images.writes`); either way the object at the key changes at once.

Callers hold a `FileStore` and never ask which backend it is: what one backend can do and
another cannot is a method here whose default says what a backend without it answers (`None`,
`False`, or the plain way round), and a backend that can overrides it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TypeGuard

from images.core.paths import RESERVED_PREFIX, is_safe_file_path
from images.runtime.offload import cooperate

CHUNK_SIZE = 256 * 1024
STAGING_PREFIX = f"{RESERVED_PREFIX}/staging"


class UnsafeKey(ValueError):
    """A key that may not be written: unsafe as a path, or reaching through a symbolic link."""


# The keys among those given that some document (of any owner) references, each with the sha256
# that document gives its bytes.
ReferencedKeys = Callable[[list[str]], Mapping[str, str | None]]

# A key whose folders collide with stored files (`a.jpg/b.jpg` beside `a.jpg`), or the reverse.
PATH_CONFLICTS = (NotADirectoryError, IsADirectoryError, FileExistsError)


def new_staging_key() -> str:
    return f"{STAGING_PREFIX}/{uuid.uuid4().hex}"


def is_storable_key(key: object) -> TypeGuard[str]:
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
        cooperate()  # a fast reader never makes the socket wait: a turn for the loop
        yield chunk


class FileStore(ABC):
    """The operations the service needs from a storage backend.

    A backend implements the abstract methods (the bytes: save, stat, read, delete, promote,
    list, check). The others have a default that works on any backend, or that answers for a
    backend without the capability; a backend that has it overrides them.
    """

    # --- the bytes (every backend) -------------------------------------------------------------
    @abstractmethod
    def save(self, key: str, source: IO[bytes]) -> None:
        """Store the bytes of `source` at `key`, replacing what is there."""

    def save_path(self, key: str, source_path: str) -> None:
        """Store the bytes of a file on local disk at `key` (the file itself stays)."""
        with open(source_path, "rb") as source:
            self.save(key, source)

    @abstractmethod
    def stat(self, key: str) -> StoredFile | None:
        """Size, time and ETag of the file at `key`; None when missing or unsafe."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @abstractmethod
    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes `start..end` (inclusive) of `key`, in chunks, never the whole file at once."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing file, or an unsafe key, is not an error."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every one of `keys`, as `delete` does each. One `delete` a key here; a
        backend with a bulk delete removes them in fewer requests."""
        for key in keys:
            self.delete(key)
            cooperate()

    def remove_unreferenced(self, keys: Iterable[str], referenced: ReferencedKeys) -> list[str]:
        """Remove the files of `keys` that no document references; the keys removed. Here
        every writer of a new key holds its lease, so asking the documents first is enough (a
        backend whose writers create keys without one overrides it)."""
        candidates = [key for key in keys if is_storable_key(key)]
        used = referenced(candidates) if candidates else {}
        unused = [key for key in candidates if key not in used]
        self.delete_many(unused)
        return unused

    def sha256(self, key: str) -> str:
        """The sha256 of the bytes at `key`, read in chunks (FileNotFoundError when missing)."""
        digest = hashlib.sha256()
        for chunk in self.read_chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def same_file(self, staging: str, key: str) -> bool:
        """Whether `key` is the staged file itself, linked there by `link_if_absent` (never,
        on a backend without links)."""
        return False

    @abstractmethod
    def iter_all_keys(self) -> Iterator[str]:
        """Every stored object, as listed, safe or not (what `check_integrity` accounts for)."""

    def iter_keys_under(self, prefix: str) -> Iterator[str]:
        """The objects `iter_all_keys` lists below the folder `prefix` (here: all of them,
        filtered; a backend that can list one folder overrides it)."""
        return (key for key in self.iter_all_keys() if key.startswith(f"{prefix}/"))

    def iter_keys(self) -> Iterator[str]:
        """Every stored file outside the reserved prefix (temporary files of uploads included)."""
        return (key for key in self.iter_all_keys() if not key.startswith(f"{RESERVED_PREFIX}/"))

    def delete_raw(self, key: str) -> bool:
        """Remove an object listed by `iter_all_keys` that is no valid key; False if refused
        (here: always, a backend that can remove such an object safely overrides it)."""
        return False

    def is_symlink(self, key: str) -> bool:
        """Whether the entry `key`, as listed by `iter_all_keys`, is itself a symbolic link.
        False on a backend without links (here)."""
        return False

    @abstractmethod
    def check(self) -> None:
        """Raise when the storage cannot be reached."""

    def close(self) -> None:  # noqa: B027 (most backends hold no connection)
        """Let go of connections (before a process forks); nothing to do here."""

    # --- reading where the bytes lie (backends with files) ---------------------------------------
    def open_file(self, key: str) -> IO[bytes] | None:
        """`key` opened as a real file (it has a descriptor), positioned at its start: what
        is read through it is one version of the file even when the key is replaced
        meanwhile. A missing file or an unsafe key raises (`FileNotFoundError`, `UnsafeKey`).
        None on a backend that keeps no files (here): read it with `read_chunks`."""
        return None

    def open_read(self, key: str) -> tuple[IO[bytes] | None, StoredFile] | None:
        """What `key` holds, to be read: `(handle, stored)`, or None when it holds nothing (or
        is unsafe). A backend with files opens it and describes the open file, so that
        `stored` (size, time, ETag) is of the bytes read through `handle` even when the key is
        replaced meanwhile; the caller closes `handle`. A backend without files (here) answers
        `(None, stat(key))`: its bytes are read with `read_chunks`."""
        stored = self.stat(key)
        return None if stored is None else (None, stored)

    def redirect_url(self, key: str, filename_header: str, content_type: str) -> str | None:
        """A short-lived URL from which a client downloads `key` itself, answered with this
        `Content-Disposition` and `Content-Type`. None where the service sends the bytes
        (here: a backend without such links, or one where they are turned off)."""
        return None

    def free_bytes(self) -> int | None:
        """Bytes free where the files are stored. None where there is no such limit or it
        cannot be told (here: object storage)."""
        return None

    # --- writing: staging and promotion --------------------------------------------------------
    def check_writable(self, key: str) -> None:
        """Raise `UnsafeKey` when `key` may not be written."""
        if not is_storable_key(key):
            raise UnsafeKey(f"unsafe storage key {key!r}")

    def stage(self, source: IO[bytes], staging: str) -> None:
        """Write new bytes under a staging key (not yet durable: `make_durable` follows, on
        the staging key or on the key they are linked to, once it is known which)."""
        self.save(staging, source)

    @property
    def adopts_local_files(self) -> bool:
        """Whether `stage_path` takes a file on local disk over (renames it in) rather than
        reading it. False (here): `stage_path` reads it as `stage` reads an open file, so a
        caller holding the file open passes that instead."""
        return False

    def stage_path(self, source_path: str, staging: str) -> None:
        """Stage a file that is on local disk (see `adopts_local_files`: it may be moved
        rather than copied)."""
        self.save_path(staging, source_path)

    def link_if_absent(self, staging: str, key: str) -> bool | None:
        """Give the staged bytes a second name, `key`, unless a file is there. True: linked
        (`make_durable(key)`, then `unlink_staging`); False: `key` holds a file (nothing
        changed); None: this store cannot do that (here; the caller asks the documents whether
        `key` is used, and promotes)."""
        return None

    def make_durable(self, keys: Collection[str]) -> None:
        """Make the bytes at `keys` and their names survive a power loss (before a document
        names them), all keys at once. Nothing here: a backend whose writes are durable once
        they return."""
        return

    def unlink_staging(self, staging: str) -> None:
        """Drop the staging name of bytes linked to their key (nothing here: no links)."""
        return

    @abstractmethod
    def promote(self, staging: str, key: str, size: int) -> None:
        """Replace `key` at once by the staged bytes; the staging key is gone afterwards."""
