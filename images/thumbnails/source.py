"""The bytes a thumbnail is made from, hashed as they are read.

A thumbnail is stored under the document's sha256 and shared by every image with that hash,
whoever owns it. So it may be stored only if the bytes it was made from hash to that sha256:
a file that no longer matches its document (a re-upload in flight, a race between two of them)
would otherwise put one user's picture in another's thumbnails.

On local disk the file is opened once and hashed through that descriptor, and the picture is
decoded from the same descriptor: renames by other writers cannot swap the bytes between the
check and the decoding. Other storage is copied to a temporary file while hashed (never into
memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from images.runtime.offload import cooperate, run_off_loop
from images.store.files import CHUNK_SIZE, FileStore


@dataclass(frozen=True)
class VerifiedSource:
    file: IO[bytes]  # a real file (it has a descriptor), positioned at its start
    sha256: str
    matches: bool  # the bytes hash to the sha256 the document claims


@contextlib.contextmanager
def open_verified(files: FileStore, key: str, expected: str | None) -> Iterator[VerifiedSource]:
    handle = files.open_file(key)
    if handle is not None:
        with handle:
            digest = run_off_loop(_hash_of, handle)
            yield _source(handle, digest, expected)
        return
    with tempfile.TemporaryFile() as spooled:
        hasher = hashlib.sha256()
        for chunk in files.read_chunks(key):
            hasher.update(chunk)
            spooled.write(chunk)
            cooperate()
        yield _source(spooled, hasher.hexdigest(), expected)


def _hash_of(handle: IO[bytes]) -> str:
    hasher = hashlib.sha256()
    while chunk := handle.read(CHUNK_SIZE):
        hasher.update(chunk)
    return hasher.hexdigest()


def _source(handle: IO[bytes], digest: str, expected: str | None) -> VerifiedSource:
    handle.seek(0)
    return VerifiedSource(file=handle, sha256=digest, matches=digest == expected)
