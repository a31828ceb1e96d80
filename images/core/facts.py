"""Image facts of a stored file, computed in one streaming pass over its bytes.

The bytes are hashed as they go by; only the first part of the file is kept, until Pillow can
read the header from it (a few kilobytes for JPEG, PNG, WebP, most TIFFs). Nothing else of the
file is ever held in memory.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
from collections.abc import Iterable
from typing import Any

from PIL import Image, UnidentifiedImageError

# Headers larger than this (a TIFF with its directory at the end) are left unread.
MAX_HEADER_BYTES = 8 * 1024 * 1024
_HEADER_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def guess_content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class FactsReader:
    """Feed it the chunks of one file in order; `facts()` then holds what was learned."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.digest = hashlib.sha256()
        self.size = 0
        self.header = bytearray()
        self.image_facts: dict[str, Any] | None = None
        self.gave_up = False

    def feed(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.image_facts is None and not self.gave_up:
            self.header += chunk
            self._try_header()

    def _try_header(self) -> None:
        try:
            with Image.open(io.BytesIO(self.header)) as image:
                self.image_facts = {
                    "width": image.width,
                    "height": image.height,
                    "format": image.format,
                    "mode": image.mode,
                    "contentType": Image.MIME.get(image.format or "")
                    or guess_content_type(self.name),
                }
        except Image.DecompressionBombError:
            self.gave_up = True
        except _HEADER_ERRORS:
            self.gave_up = len(self.header) >= MAX_HEADER_BYTES
            return
        self.header = bytearray()

    @property
    def is_image(self) -> bool:
        return self.image_facts is not None

    def facts(self) -> dict[str, Any]:
        """`size` and `sha256` always; the image facts when the header could be read."""
        found = self.image_facts or {"contentType": guess_content_type(self.name)}
        return {**found, "size": self.size, "sha256": self.digest.hexdigest()}


def facts_of_chunks(chunks: Iterable[bytes], name: str) -> tuple[dict[str, Any], bool]:
    """The facts of a file given as chunks, and whether it is a readable image."""
    reader = FactsReader(name)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.facts(), reader.is_image
