"""Finishing or undoing the write of a writer that lost its lease (died, or lost the database).

The rule it restores is the write path's invariant: a document's key holds the bytes the
document describes, and a key no document references holds nothing. A lease that recorded
staged bytes is rolled forward (the bytes promoted) when a document referencing the key already
carries their sha256, which means the document write landed; otherwise the staged bytes are
dropped, and with them the file at the key when it is the staged file itself (linked there by a
writer whose document never landed). A key no document references is then removed (the file of
a new image whose document never landed, or of a delete that stopped between the document and
the file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from images.store.files import FileStore
from images.store.repository import get_collection

logger = logging.getLogger(__name__)


def referenced_keys(keys: Iterable[str]) -> set[str]:
    """The keys some document (of any owner) points to."""
    keys = list(keys)
    if not keys:
        return set()
    cursor = get_collection().find({"file": {"$in": keys}}, {"file": 1, "_id": 0})
    return {document["file"] for document in cursor}


def referencing_sha256(keys: Iterable[str]) -> dict[str, str | None]:
    """The keys some document (of any owner) points to, each with that document's sha256."""
    keys = list(keys)
    if not keys:
        return {}
    cursor = get_collection().find({"file": {"$in": keys}}, {"file": 1, "sha256": 1, "_id": 0})
    return {document["file"]: document.get("sha256") for document in cursor}


def recover(files: FileStore, key: str, lease: dict[str, Any]) -> None:
    documents = list(get_collection().find({"file": key}, {"sha256": 1}))
    staging = lease.get("staging")
    staged = files.stat(staging) if staging else None
    if staging and staged is not None:
        if lease.get("sha256") and any(d.get("sha256") == lease["sha256"] for d in documents):
            logger.info("Finishing an interrupted write of %s", key)
            files.promote(staging, key, staged.size)
        else:
            logger.info("Dropping the staged bytes of an interrupted write of %s", key)
            if files.same_file(staging, key):  # linked there, and no document describes them
                files.delete(key)
            files.delete(staging)
    if not documents and files.remove_unreferenced([key], referencing_sha256):
        logger.info("Removed %s: no document references it after an interrupted write", key)
