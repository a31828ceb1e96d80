"""The entries of an uploaded zip: opened, checked by name before anything is written, sorted
into images, the manifest and skipped ones, copied out with their hash, and the manifest parsed
as a stream."""

from __future__ import annotations

import hashlib
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from images.archives.layout import MANIFEST_JSON, MANIFESTS, READ_CHUNK
from images.core.errors import InvalidInput
from images.core.paths import RESERVED_PREFIX, validate_file_path
from images.limits import bounded_json
from images.limits.archives import unpacked_size
from images.store.files import is_storable_key


@dataclass
class ArchivePlan:
    """The entries of an archive, sorted out before anything is written."""

    images: list[zipfile.ZipInfo] = field(default_factory=list)
    manifest: zipfile.ZipInfo | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unpacked_size: int = 0


def open_zip(path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise InvalidInput("The archive is not a readable zip file") from None


def plan_archive(archive: zipfile.ZipFile) -> ArchivePlan:
    """Check every entry name (400 on an unsafe one, before anything is written) and sort the
    entries into images, the manifest and skipped ones."""
    infos = archive.infolist()
    for info in infos:
        check_entry_name(info.filename)
    plan = ArchivePlan()
    for info in infos:
        name = info.filename
        if info.is_dir() or (name in MANIFESTS and name != MANIFEST_JSON):
            continue
        if name == MANIFEST_JSON:
            if info.flag_bits & 0x1 or info.compress_type not in _READABLE_METHODS:
                raise InvalidInput(
                    f"{MANIFEST_JSON} is encrypted or uses an unsupported compression"
                )
            plan.manifest = info
        elif reason := _skip_reason(info):
            plan.skipped.append((name, reason))
        else:
            plan.images.append(info)
    read = [*plan.images, *([plan.manifest] if plan.manifest else [])]
    plan.unpacked_size = unpacked_size(read, _archive_bytes(archive))
    return plan


def _archive_bytes(archive: zipfile.ZipFile) -> int:
    assert archive.fp is not None  # an open archive
    archive.fp.seek(0, 2)
    return archive.fp.tell()


def check_entry_name(name: str) -> None:
    """400 for a name that would leave the storage root: absolute, `..`, backslash, drive..."""
    path = name[:-1] if name.endswith("/") else name
    if path == RESERVED_PREFIX or is_storable_key(path):
        return
    try:
        validate_file_path(path, "archive entry")
    except InvalidInput as error:
        raise InvalidInput(f"Unsafe archive entry: {error.detail}") from None


def _skip_reason(info: zipfile.ZipInfo) -> str | None:
    parts = info.filename.split("/")
    if parts[0] == "__MACOSX":
        return "macOS metadata"
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.compress_type not in _READABLE_METHODS:
        return f"unsupported compression method {info.compress_type}"
    if info.file_size == 0:
        return "empty file"
    if info.file_size > settings.MAX_UPLOAD_SIZE:
        return f"larger than the upload limit of {settings.MAX_UPLOAD_SIZE} bytes"
    return None


# Reading an entry whose bytes are damaged (bad CRC, truncated or undecodable data).
CORRUPT_ENTRY_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError)
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes]) -> tuple[str, int]:
    """Copy one entry, hashing it; a corrupt entry (bad CRC, truncated data) is a 400."""
    digest = hashlib.sha256()
    size = 0
    try:
        with archive.open(info) as entry:
            while chunk := entry.read(READ_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except CORRUPT_ENTRY_ERRORS as error:
        raise InvalidInput(f"The archive is corrupt at entry {info.filename!r}") from error
    return digest.hexdigest(), size


def manifest_items(stream: IO[bytes]) -> Iterator[Any]:
    """The items of a JSON array read as a stream, their depth and size bounded as it is read."""
    return bounded_json.array_items(stream, MANIFEST_JSON, bounded_json.MAX_DATA_DEPTH + 2)
