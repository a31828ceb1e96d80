"""What one import may unpack: the total decompressed bytes of the entries it reads, and the
compression ratio of each entry (and of the archive), from the zip's directory, before any
entry is read or written. The reader stops at each entry's declared size, so the declared
sizes are a true bound."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable

from django.conf import settings

from images.core.errors import TooLarge

# Entries smaller than this are not held to the ratio (tiny files compress well); the archive
# as a whole still is.
RATIO_FLOOR = 1024 * 1024


def unpacked_size(entries: Iterable[zipfile.ZipInfo], archive_bytes: int) -> int:
    """The bytes the import will decompress; 413 past MAX_IMPORT_UNPACKED_SIZE or
    MAX_COMPRESSION_RATIO."""
    ratio = settings.MAX_COMPRESSION_RATIO
    total = 0
    for info in entries:
        total += info.file_size
        if info.file_size > RATIO_FLOOR and info.file_size > ratio * max(info.compress_size, 1):
            raise TooLarge(
                f"Archive entry {info.filename!r} expands {info.file_size // max(info.compress_size, 1)}"
                f" times, more than MAX_COMPRESSION_RATIO ({ratio})"
            )
    limit = settings.MAX_IMPORT_UNPACKED_SIZE
    if total > limit:
        raise TooLarge(
            f"The archive unpacks to {total} bytes, more than MAX_IMPORT_UNPACKED_SIZE ({limit})"
        )
    if total > RATIO_FLOOR and total > ratio * max(archive_bytes, 1):
        raise TooLarge(
            f"The archive expands {total // max(archive_bytes, 1)} times, more than "
            f"MAX_COMPRESSION_RATIO ({ratio})"
        )
    return total
