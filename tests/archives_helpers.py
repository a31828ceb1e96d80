"""Zips to import, posted as a client does, and the keys the file store holds after."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

from rest_framework.test import APIClient

from images.store.files import get_file_store


def make_zip(entries: Mapping[str, bytes | None], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip with the given entries in order, compressed with `method` (None: a directory
    entry)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in entries.items():
            if content is None:
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, content)
    return buffer.getvalue()


def post_archive(
    api: APIClient, content: bytes, name: str = "archive.zip", field: str = "archive", **extra
):
    """POST /import with `content` as the file of `field`."""
    file = io.BytesIO(content)
    file.name = name
    return api.post("/import", {field: file, **extra}, format="multipart")


def stored_keys() -> list[str]:
    return sorted(get_file_store().iter_keys())
