"""The import: an archive's images staged entry by entry, then committed in batches through the
write path (`images.writes`: files and documents under the keys' leases).

A corrupt entry (bad checksum, truncated data) is skipped and reported like any other skipped
entry: the answer lists what was not written and counts the documents that were. A manifest
document without an archive entry only updates the `time` and `data` of a document the caller
already has at that path; it never adopts a file that merely exists in storage.

Under gevent workers nothing here holds the loop for long (`images.runtime.offload`): the
archive's directory is read and checked, and each entry expanded, hashed and inspected, on a
native thread; staged bytes are copied there too (`FileStore.stage`), and the loops over
entries, manifest items and documents give the loop a turn at every step."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
from images.core.dates import now, parse_date
from images.core.errors import InvalidInput
from images.core.paths import storage_key, validate_file_path
from images.core.query import parse_object_id
from images.duplicates.imports import ImportDuplicates
from images.duplicates.perceptual import perceptual_facts
from images.duplicates.policy import OnDuplicate
from images.limits.disk import ensure_room
from images.limits.documents import check_data
from images.runtime.offload import cooperate, run_off_loop
from images.store.files import PATH_CONFLICTS, FileStore, UnsafeKey
from images.store.repository import ImageRepository
from images.writes import FileWriter, StagedFile
from images.writes.uploads import inspect_image, validate_data

logger = logging.getLogger(__name__)


def _batches(items: Iterable, size: int) -> Iterable[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# An imported entry is held in memory up to this size while it is hashed and inspected.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
DOCUMENT_BATCH = 500
# A batch of staged files is committed once its first one is this old, full or not.
BATCH_SECONDS = 30.0
# The response lists this many skipped entries in detail; `skippedCount` has the total.
MAX_REPORTED_SKIPS = 1000


# (sha256, size, facts) of an entry copied out.
Extracted = tuple[str, int, dict[str, Any]]
# Small entries are copied out together, up to this many bytes (as the directory states them)
# and entries a trip to the thread pool: a round trip costs about what expanding 100 KB does.
GROUP_BYTES = 4 * 1024 * 1024
GROUP_ENTRIES = 64


def _groups(images: list[zipfile.ZipInfo]) -> Iterator[list[zipfile.ZipInfo]]:
    """The entries in order, small ones together; a large one alone."""
    group: list[zipfile.ZipInfo] = []
    size = 0
    for info in images:
        if group and (size + info.file_size > GROUP_BYTES or len(group) >= GROUP_ENTRIES):
            yield group
            group, size = [], 0
        group.append(info)
        size += info.file_size
    if group:
        yield group


def _extract_group(
    archive: zipfile.ZipFile,
    group: list[zipfile.ZipInfo],
    spools: list[IO[bytes]],
    keys: list[str],
) -> list[Extracted | InvalidInput]:
    """Each entry copied out (expanded and hashed) to its spool and its header read, or why it
    is skipped: on a native thread, as an entry may take seconds to expand (bzip2 and LZMA
    above all) and a crafted one to inspect."""
    extracted: list[Extracted | InvalidInput] = []
    for info, spool, key in zip(group, spools, keys, strict=True):
        try:
            sha256, size = copy_entry(archive, info, spool)
            extracted.append((sha256, size, inspect_image(spool, key)))
        except InvalidInput as error:
            extracted.append(error)
    return extracted


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
        similar: int | None = None,
    ) -> None:
        self.repository = repository
        self.files = files
        self.extra_data = extra_data or {}
        self.time = time
        self.batch_size = batch_size or DOCUMENT_BATCH
        self.progress = progress
        self.file_writer = FileWriter(files)
        self.on_duplicate = on_duplicate
        self.similar = similar
        self.duplicates: ImportDuplicates | None = None

    def run(self, archive_path: str | Path, name: str) -> ImportResult:
        result = ImportResult(file=name)
        # Reading the directory and checking every name is Python over every entry: off the loop.
        archive, plan = run_off_loop(self._open_and_plan, archive_path)
        with archive:
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
                    self.duplicates = ImportDuplicates(
                        self.repository, self.on_duplicate, hashes, self.similar
                    )
                try:
                    self._import(archive, plan, index, scratch, result)
                finally:
                    index.close()
                    if self.duplicates is not None:
                        self.duplicates.close()
        return result

    def _open_and_plan(self, archive_path: str | Path) -> tuple[zipfile.ZipFile, ArchivePlan]:
        archive = open_zip(archive_path)
        try:
            plan = plan_archive(archive)
            for info in plan.images:  # every final key within the limits, before any write
                self.storage_key(info.filename)
        except BaseException:
            archive.close()
            raise
        return archive, plan

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
        writer = DocumentWriter(
            self.repository,
            self.file_writer,
            self.batch_size,
            lambda document, reason: result.skip(document["file"], reason),
            index.mark_written,
        )
        try:
            self._store_images(archive, plan.images, index, scratch, result, writer)
            writer.finish()
        except BaseException:
            writer.abandon()
            raise
        finally:
            result.imported = index.written_count()
        for key in index.superseded_documents():
            result.skip(key, "a later item of the manifest describes the same file")
            cooperate()
        self._update_documents_without_entry(index, result)
        result.imported = index.written_count()

    # --- names ------------------------------------------------------------------------------
    def storage_key(self, name: str) -> str:
        """An entry's storage key: under IMAGE_SCOPE=user, prefixed with the importing user
        (unless it already is, as in archives that user exported); 400 past the limits."""
        owner = self.repository.owner
        if owner and name.startswith(f"{owner}/"):
            return storage_key(name, None, "archive entry")
        return storage_key(name, owner, "archive entry")

    # --- mongodb_data.json ------------------------------------------------------------------
    def _load_manifest(self, archive: zipfile.ZipFile, info, index: ImportIndex) -> None:
        """Validate every document of the manifest into the index; 400 on the first bad one."""
        try:
            with archive.open(info) as stream:
                for position, item in enumerate(manifest_items(stream)):
                    cooperate()  # each item is read, decompressed and checked on the loop
                    key, record = self._manifest_document(item, position)
                    try:
                        index.add_document(position, key, record)
                    except orjson.JSONEncodeError:
                        raise InvalidInput(
                            f"{MANIFEST_JSON} item {position}: a number is too large to store"
                        ) from None
        except CORRUPT_ENTRY_ERRORS as error:
            raise InvalidInput(f"The archive is corrupt at entry {MANIFEST_JSON!r}") from error

    def _manifest_document(self, item: Any, position: int) -> tuple[str, dict[str, Any]]:
        where = f"{MANIFEST_JSON} item {position}"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} is not a JSON object")
        try:
            file = validate_file_path(item.get("file"), "file")
            image_id = item.get("_id")
            if image_id is not None:
                image_id = str(parse_object_id(image_id, "_id"))
            if self.repository.owner is not None:
                # Per-user scope: new images get server ids, whether the archive's id is free
                # or another user's (nothing tells them apart); kept images keep theirs.
                image_id = None
            time = item.get("time")
            time = parse_date(time, "time") if time is not None else None
            data = item.get("data")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise InvalidInput("'data' must be a JSON object")
            validate_data(data)
            check_data({**data, **self.extra_data}, f"{where}: its data")
        except InvalidInput as error:
            raise InvalidInput(f"{where}: {error.detail}") from None
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
        """Stage the images one by one; after each batch of files, queue their documents.

        A batch goes once it is full or its first file has waited BATCH_SECONDS: staged bytes
        wait that long at most (plus one entry and the commit before) before a lease records
        them, well within the age at which `check_integrity --fix` removes staged objects that
        no lease records (those of a process that died)."""
        stored: dict[str, tuple[StagedFile, dict[str, Any]]] = {}
        first_staged = 0.0
        for group in _groups(images):
            with contextlib.ExitStack() as spools_open:
                spools = [
                    spools_open.enter_context(
                        tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=scratch)
                    )
                    for _ in group
                ]
                keys = [self.storage_key(info.filename) for info in group]
                extracted = run_off_loop(_extract_group, archive, group, spools, keys)
                for info, key, spool, facts in zip(group, keys, spools, extracted, strict=True):
                    cooperate()
                    staged = self._store_entry(info, key, spool, facts, result, index)
                    index.add_entry(key, staged is not None)
                    if staged is not None:
                        if key in stored:  # the same name twice: the later entry wins
                            self.file_writer.discard([stored[key][0]])
                        if not stored:
                            first_staged = time.monotonic()
                        stored[key] = staged
                    waited = time.monotonic() - first_staged
                    if len(stored) >= self.batch_size or (stored and waited >= BATCH_SECONDS):
                        self._queue_documents(stored, index, writer)
                        stored = {}
                    if self.progress is not None:
                        self.progress.update(1)
        self._queue_documents(stored, index, writer)

    def _store_entry(
        self,
        info: zipfile.ZipInfo,
        key: str,
        spool: IO[bytes],
        extracted: Extracted | InvalidInput,
        result: ImportResult,
        index: ImportIndex,
    ) -> tuple[StagedFile, dict[str, Any]] | None:
        """Stage one entry, copied out to `spool`, for `key`, with its facts; None when it is
        skipped."""
        if isinstance(extracted, InvalidInput):
            result.skip(info.filename, str(extracted.detail))
            return None
        sha256, size, facts = extracted
        if "width" in facts:  # a picture: its perceptual hash, if it decodes
            facts.update(perceptual_facts(spool))
        phash = facts.get("phash")
        if self.duplicates is not None and self.duplicates.found(
            info.filename, sha256, phash, key, result
        ):
            index.add_duplicate(key)
            return None
        spool.seek(0)
        try:
            staged = self.file_writer.stage(key, spool, sha256, size)
        except UnsafeKey:
            result.skip(info.filename, "its path reaches outside the uploads directory")
            return None
        except PATH_CONFLICTS:
            result.skip(info.filename, "its path conflicts with a stored file or folder")
            return None
        if self.duplicates is not None:
            self.duplicates.remember(sha256, phash, key)
        return staged, {**facts, "size": size, "sha256": sha256}

    # --- documents --------------------------------------------------------------------------
    def _queue_documents(
        self,
        stored: dict[str, tuple[StagedFile, dict[str, Any]]],
        index: ImportIndex,
        writer: DocumentWriter,
    ) -> None:
        """Documents of staged files: from the manifest when it has them, else new ones."""
        records = dict(index.documents_for(list(stored)))
        for key, (staged, facts) in stored.items():
            record = records.get(key, {"_id": None, "time": None, "data": {}})
            writer.add(staged, self._document(key, {**record, **facts}))
        writer.send()

    def _update_documents_without_entry(self, index: ImportIndex, result: ImportResult) -> None:
        """Manifest documents whose file the archive did not bring update the caller's
        document at that path; without one they are skipped (a file alone is not enough)."""
        for batch in _batches(index.documents_without_stored_file(), self.batch_size):
            cooperate()
            known = self.repository.known_files([key for key, _, _ in batch])
            updates = []
            for key, record, in_archive in batch:
                if in_archive:
                    result.skip(key, "its file was skipped")
                elif key not in known:
                    result.skip(key, "its file is not in the archive and no image of yours has it")
                else:
                    updates.append(self._document(key, record))
            self.repository.update_existing(updates)
            index.mark_written({document["file"] for document in updates})

    def _document(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        document = {k: v for k, v in record.items() if v is not None}
        document["file"] = key
        document["data"] = {**record.get("data", {}), **self.extra_data}
        if record.get("_id"):
            document["_id"] = parse_object_id(record["_id"], "_id")
        time = record.get("time")
        document["time"] = parse_date(time, "time") if time else (self.time or now())
        return document
