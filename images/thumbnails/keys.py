"""Where thumbnails are stored, and removing them with their image.

A thumbnail is stored under the reserved prefix, named by the image's sha256, its size and
format (`.imagestore/thumbnails/<sha256>-256.jpg`): a re-upload with other bytes gets other
thumbnails, and the same bytes under two paths (or two users) share theirs, which is safe only
because a thumbnail is stored under a sha256 only when it was made from bytes that hash to it
(images.thumbnails.source). Images stored before facts existed (no sha256) are named by `_id`
until `manage.py backfill_facts` runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from images.core.paths import RESERVED_PREFIX
from images.core.query import ImageQuery
from images.store.files import FileStore
from images.store.repository import ImageRepository

THUMBNAIL_PREFIX = f"{RESERVED_PREFIX}/thumbnails"
SIZES = (64, 128, 256, 512)
DEFAULT_SIZE = 256
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class OutputFormat:
    extension: str
    content_type: str
    pillow_format: str
    save_options: dict[str, Any]


JPEG = OutputFormat("jpg", "image/jpeg", "JPEG", {"quality": 85, "optimize": True})
WEBP = OutputFormat("webp", "image/webp", "WEBP", {"quality": 80, "method": 4})
FORMATS = (JPEG, WEBP)


def document_sha256(document: dict[str, Any]) -> str | None:
    sha256 = document.get("sha256")
    return sha256 if isinstance(sha256, str) and SHA256.match(sha256) else None


def stem(document: dict[str, Any]) -> str:
    return document_sha256(document) or f"id-{document['_id']}"


def thumbnail_key(document: dict[str, Any], size: int, output: OutputFormat) -> str:
    return f"{THUMBNAIL_PREFIX}/{stem(document)}-{size}.{output.extension}"


def thumbnail_keys(document: dict[str, Any]) -> list[str]:
    """Every key a thumbnail of this document may have been stored at."""
    stems = {stem(document), f"id-{document['_id']}"}
    return [
        f"{THUMBNAIL_PREFIX}/{name}-{size}.{output.extension}"
        for name in sorted(stems)
        for size in SIZES
        for output in FORMATS
    ]


def delete_thumbnails(files: FileStore, document: dict[str, Any]) -> None:
    """Remove the stored thumbnails of one image document (missing ones are fine)."""
    files.delete_many(thumbnail_keys(document))


def thumbnail_keys_of_ids(repository: ImageRepository, image_ids: list[ObjectId]) -> list[str]:
    """The thumbnail keys of many images (ask before their documents are deleted)."""
    query = ImageQuery(filter={"_id": {"$in": image_ids}}, limit=0, projection={"sha256": 1})
    return [key for document in repository.find(query) for key in thumbnail_keys(document)]
