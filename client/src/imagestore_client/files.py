"""Local files: hashing, atomic writes that verify a sha256, and safe relative paths."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from imagestore_client.errors import ImagestoreError, IntegrityError

CHUNK = 1024 * 1024
DRIVE = re.compile(r"[A-Za-z]:")  # `C:` starts a Windows drive, with or without a slash


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_verified(dest: Path, chunks: Iterable[bytes], sha256: str | None) -> int:
    """Write `chunks` to `dest` through a temporary file renamed into place once the hash matches.

    A failed or interrupted download never leaves a partial file at `dest`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, temporary = _create_temporary(dest)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if sha256 and digest.hexdigest() != sha256:
            raise IntegrityError(f"{dest}: sha256 {digest.hexdigest()} instead of {sha256}")
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size


def _create_temporary(dest: Path) -> tuple[int, str]:
    """A new file beside `dest`, with the mode the umask gives (mkstemp's would be 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = str(dest.with_name(f".{dest.name[:50]}.{secrets.token_hex(6)}"))
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def capped(chunks: Iterable[bytes], limit: int | None, what: str) -> Iterator[bytes]:
    """`chunks`, stopped with an IntegrityError as soon as they run past `limit` bytes."""
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if limit is not None and received > limit:
            raise IntegrityError(f"{what}: the service sent more than the {limit} bytes announced")
        yield chunk


def safe_relative(path: str) -> PurePosixPath:
    """`path` as a relative path that stays inside the folder it is joined to.

    `..`, absolute paths and Windows drives or shares (`C:/x`, `C:x`, `\\\\server\\share`) are
    refused: each would write outside the folder somewhere.
    """
    relative = PurePosixPath(path.replace("\\", "/"))
    parts = [part for part in relative.parts if part not in ("", ".")]
    if (
        not parts
        or relative.is_absolute()
        or ".." in parts
        or any("\x00" in part or DRIVE.match(part) for part in parts)
    ):
        raise ImagestoreError(f"Unsafe file path from the service: {path!r}")
    return PurePosixPath(*parts)
