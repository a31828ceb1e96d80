"""Deleting images: under each key's lease, the document first, then the file, and the file only
when no document (of any owner) references its key any more."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bson import ObjectId

from images.store.files import FileStore
from images.store.repository import ImageRepository
from images.thumbnails import delete_thumbnails, thumbnail_keys_of_ids
from images.writes.leases import Held, Intent, Leases, may_have_applied
from images.writes.recovery import recover, referencing_sha256

logger = logging.getLogger(__name__)


class Deleter:
    def __init__(self, repository: ImageRepository, files: FileStore) -> None:
        self.repository = repository
        self.files = files
        self.leases = Leases(lambda key, lease: recover(files, key, lease))

    def delete_one(self, image_id: ObjectId) -> dict[str, Any] | None:
        """Delete one image of the repository's owner; None when there is none."""
        document = self.repository.get(image_id)
        if document is None:
            return None
        key = document.get("file")
        if not isinstance(key, str):
            return self.repository.delete_one(image_id)
        removed = None
        for held in self.leases.rounds({key: Intent()}):
            removed = self._under_lease(held, lambda: self.repository.delete_one(image_id))
            if removed is not None:
                self._remove_unreferenced([key])
                delete_thumbnails(self.files, removed)
            self.leases.release_quietly(held)  # done (a database gone meanwhile: settled later)
        return removed

    def delete_many(self, targets: list[tuple[ObjectId, Any]]) -> int:
        """Delete these images (`_id`, `file`) of the repository's owner; how many were."""
        by_key: dict[str, list[ObjectId]] = {}
        loose = [image_id for image_id, key in targets if not isinstance(key, str)]
        for image_id, key in targets:
            if isinstance(key, str):
                by_key.setdefault(key, []).append(image_id)
        deleted = self.repository.delete_ids(loose) if loose else 0
        for held in self.leases.rounds(dict.fromkeys(by_key, Intent())):
            ids = [image_id for key in held.keys for image_id in by_key[key]]
            thumbnails = thumbnail_keys_of_ids(self.repository, ids)
            deleted += self._under_lease(held, lambda ids=ids: self.repository.delete_ids(ids))
            self._remove_unreferenced(held.keys)
            self.files.delete_many(thumbnails)
            self.leases.release_quietly(held)  # done (a database gone meanwhile: settled later)
        return deleted

    def _under_lease(self, held: Held, delete_documents):
        """Run the document delete; when it surely did not land, give the leases back (a
        delete that may have landed leaves them to recovery, which removes the file then)."""
        try:
            return delete_documents()
        except BaseException as error:
            if may_have_applied(error):
                self.leases.settle_later(held)
            else:
                self.leases.release_quietly(held)
            raise

    def _remove_unreferenced(self, keys: Iterable[str]) -> None:
        self.files.remove_unreferenced(keys, referencing_sha256)
