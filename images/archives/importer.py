"""The import: an archive's images stored entry by entry, then their documents upserted in
batches, each batch after its files (so no document points at a file not yet written)."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from images.archives.document_writer import DocumentWriter
from images.archives.entries import (
    CORRUPT_ENTRY_ERRORS,
    ArchivePlan,
    copy_entry,
    manifest_items,
    open_zip,
    plan_archive,
)
from images.archives.import_index import ImportIndex
from images.archives.layout import MANIFEST_JSON, Progress
from images.dates import now, parse_date
from images.duplicates.imports import ImportDuplicates
from images.duplicates.policy import OnDuplicate
from images.exceptions import BadRequest
from images.limits.disk import ensure_room
from images.limits.documents import check_data
from images.paths import scoped_path, validate_file_path
from images.query import parse_object_id
from images.repository import ImageRepository
from images.storage import FileStore
from images.uploads import inspect_image, validate_data

logger = logging.getLogger(__name__)

# An imported entry is held in memory up to this size while it is hashed and inspected.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
DOCUMENT_BATCH = 500
# The response lists this many skipped entries in detail; `skippedCount` has the total.
MAX_REPORTED_SKIPS = 1000


@dataclass
class ImportResult:
    file: str
    imported: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_count: int = 0
    # With `on_duplicate`: the entries not stored because their bytes already were.
    duplicates: list[dict[str, Any]] | None = None
    duplicates_count: int = 0

    def skip(self, entry: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_REPORTED_SKIPS:
            self.skipped.append({"entry": entry, "reason": reason})

    def duplicate(self, entry: str, copy: dict[str, Any]) -> None:
        self.duplicates_count += 1
        if self.duplicates is not None and len(self.duplicates) < MAX_REPORTED_SKIPS:
            self.duplicates.append({"entry": entry, **copy})

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"file": self.file, "imported": self.imported}
        body["skipped"] = self.skipped
        if self.skipped_count > len(self.skipped):
            body["skippedCount"] = self.skipped_count
        if self.duplicates is not None:
            body["duplicates"] = self.duplicates
            if self.duplicates_count > len(self.duplicates):
                body["duplicatesCount"] = self.duplicates_count
        return body


class ArchiveImporter:
    """Stores the images of a zip archive and upserts their documents (files first)."""

    def __init__(
        self,
        repository: ImageRepository,
        files: FileStore,
        extra_data: dict[str, Any] | None = None,
        time: dt.datetime | None = None,
        batch_size: int | None = None,
        progress: Progress | None = None,
        on_duplicate: OnDuplicate | None = None,
    ) -> None:
        self.repository = repository
        self.files = files
        self.extra_data = extra_data or {}
        self.time = time
        self.batch_size = batch_size or DOCUMENT_BATCH
        self.progress = progress
        self.on_duplicate = on_duplicate
        self.duplicates: ImportDuplicates | None = None

    def run(self, archive_path: str | Path, name: str) -> ImportResult:
        result = ImportResult(file=name)
        with open_zip(archive_path) as archive:
            plan = plan_archive(archive)
            ensure_room(self.files, plan.unpacked_size)
            for entry, reason in plan.skipped:
                result.skip(entry, reason)
            if self.progress is not None:
                self.progress.reset(total=len(plan.images))
            with tempfile.TemporaryDirectory(prefix="imagestore-import-") as scratch:
                index = ImportIndex(Path(scratch) / "index.sqlite3")
                if self.on_duplicate is not None:
                    result.duplicates = []
                    hashes = Path(scratch) / "hashes.sqlite3"
                    self.duplicates = ImportDuplicates(self.repository, self.on_duplicate, hashes)
                try:
                    self._import(archive, plan, index, scratch, result)
                finally:
                    index.close()
                    if self.duplicates is not None:
                        self.duplicates.close()
        return result

    def _import(
        self,
        archive: zipfile.ZipFile,
        plan: ArchivePlan,
        index: ImportIndex,
        scratch: str,
        result: ImportResult,
    ) -> None:
        if plan.manifest is not None:
            self._load_manifest(archive, plan.manifest, index)
        writer = DocumentWriter(self.repository, self.batch_size, self._conflict(result))
        try:
            self._store_images(archive, plan.images, index, scratch, result, writer)
            self._queue_documents_without_entry(index, result, writer)
            writer.finish()
        except BaseException:
            writer.abandon()
            self._discard_unreferenced(index.stored_keys())
            raise
        finally:
            result.imported = writer.written

    # --- names ------------------------------------------------------------------------------
    def storage_key(self, name: str) -> str:
        """An entry's storage key: under IMAGE_SCOPE=user, prefixed with the importing user
        (unless it already is, as in archives that user exported)."""
        owner = self.repository.owner
        if owner and name.startswith(f"{owner}/"):
            return name
        return scoped_path(name, owner)

    # --- mongodb_data.json ------------------------------------------------------------------
    def _load_manifest(self, archive: zipfile.ZipFile, info, index: ImportIndex) -> None:
        """Validate every document of the manifest into the index; 400 on the first bad one."""
        try:
            with archive.open(info) as stream:
                for position, item in enumerate(manifest_items(stream)):
                    key, record = self._manifest_document(item, position)
                    try:
                        index.add_document(position, key, record)
                    except orjson.JSONEncodeError:
                        raise BadRequest(
                            f"{MANIFEST_JSON} item {position}: a number is too large to store"
                        ) from None
        except CORRUPT_ENTRY_ERRORS as error:
            raise BadRequest(f"The archive is corrupt at entry {MANIFEST_JSON!r}") from error

    def _manifest_document(self, item: Any, position: int) -> tuple[str, dict[str, Any]]:
        where = f"{MANIFEST_JSON} item {position}"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} is not a JSON object")
        try:
            file = validate_file_path(item.get("file"), "file")
            image_id = item.get("_id")
            if image_id is not None:
                image_id = str(parse_object_id(image_id, "_id"))
            time = item.get("time")
            time = parse_date(time, "time") if time is not None else None
            data = item.get("data")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise BadRequest("'data' must be a JSON object")
            validate_data(data)
            check_data({**data, **self.extra_data}, f"{where}: its data")
        except BadRequest as error:
            raise BadRequest(f"{where}: {error.detail}") from None
        return self.storage_key(file), {"_id": image_id, "time": time, "data": data}

    # --- files ------------------------------------------------------------------------------
    def _store_images(
        self,
        archive: zipfile.ZipFile,
        images: list[zipfile.ZipInfo],
        index: ImportIndex,
        scratch: str,
        result: ImportResult,
        writer: DocumentWriter,
    ) -> None:
        """Store the images one by one; after each batch of files, queue their documents."""
        stored: dict[str, dict[str, Any]] = {}
        for info in images:
            key = self.storage_key(info.filename)
            facts = self._store_entry(archive, info, key, scratch, result, index)
            index.add_entry(key, facts is not None)
            if facts is not None:
                stored[key] = facts
            if len(stored) >= self.batch_size:
                self._queue_documents(stored, index, writer)
                stored = {}
            if self.progress is not None:
                self.progress.update(1)
        self._queue_documents(stored, index, writer)

    def _store_entry(
        self,
        archive: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        key: str,
        scratch: str,
        result: ImportResult,
        index: ImportIndex,
    ) -> dict[str, Any] | None:
        """Store one entry at `key` and return its facts; None when it is skipped."""
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=scratch) as spool:
            sha256, size = copy_entry(archive, info, spool)
            try:
                facts = inspect_image(spool, key)
            except BadRequest as error:
                result.skip(info.filename, str(error.detail))
                return None
            if self.duplicates is not None and self.duplicates.found(
                info.filename, sha256, key, result
            ):
                index.add_duplicate(key)
                return None
            spool.seek(0)
            try:
                self.files.save(key, spool)
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                result.skip(info.filename, "its path conflicts with a stored file or folder")
                return None
            if self.duplicates is not None:
                self.duplicates.remember(sha256, key)
        return {**facts, "size": size, "sha256": sha256}

    def _discard_unreferenced(self, keys: Iterable[str]) -> None:
        """After a failure, remove the files this import wrote that no document uses."""
        try:
            for key in keys:
                if self.repository.get_by_file(key) is None:
                    self.files.delete(key)
        except Exception:
            logger.warning("Import failed; files without documents may remain", exc_info=True)

    # --- documents --------------------------------------------------------------------------
    def _queue_documents(
        self, stored: dict[str, dict[str, Any]], index: ImportIndex, writer: DocumentWriter
    ) -> None:
        """Documents of stored files: from the manifest when it has them, else new ones."""
        described = set()
        for key, record in index.documents_for(list(stored)):
            described.add(key)
            writer.add(self._document(key, {**record, **stored[key]}))
        for key, facts in stored.items():
            if key not in described:
                writer.add(self._document(key, {"_id": None, "time": None, "data": {}, **facts}))
        writer.send()

    def _queue_documents_without_entry(
        self, index: ImportIndex, result: ImportResult, writer: DocumentWriter
    ) -> None:
        """Manifest documents whose file the archive did not bring: kept if already stored."""
        for key, record, in_archive in index.documents_without_stored_file():
            if in_archive:
                result.skip(key, "its file was skipped")
            elif not self.files.exists(key):
                result.skip(key, "its file is neither in the archive nor in storage")
            else:
                writer.add(self._document(key, record))

    def _conflict(self, result: ImportResult):
        def report(document: dict[str, Any], reason: str) -> None:
            result.skip(document["file"], reason)
            self._discard_unreferenced([document["file"]])

        return report

    def _document(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        document = {k: v for k, v in record.items() if v is not None}
        document["file"] = key
        document["data"] = {**record.get("data", {}), **self.extra_data}
        if record.get("_id"):
            document["_id"] = parse_object_id(record["_id"], "_id")
        time = record.get("time")
        document["time"] = parse_date(time, "time") if time else (self.time or now())
        return document
