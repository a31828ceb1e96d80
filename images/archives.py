"""Whole datasets as zip archives: a streamed export and a safe import, in the original's format.

An archive holds every image at its `file` path, then `mongodb_data.json` (a JSON array of the
documents as the API prints them) and `mongodb_data.xlsx` (one row per document). When a
document's file cannot be read from storage, the document stays in `mongodb_data.json` and is
listed, with the reason, in `missing_files.json`; an import skips (and reports) documents whose
file is neither in the archive nor already in storage, so no document ever lacks its file.

Neither direction holds the dataset in memory: the export reads the documents a batch at a
time from one cursor (reopened where it stopped if the server drops it) and streams each file
from storage into the zip; the import reads the spooled upload entry by entry,
parses `mongodb_data.json` as a stream and writes documents in batches, after their files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import lzma
import queue
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

import ijson
import orjson
from botocore.exceptions import ClientError
from django.conf import settings
from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from images.dates import now, parse_date
from images.document_writer import DocumentWriter
from images.documents import to_api
from images.exceptions import BadRequest
from images.import_index import ImportIndex
from images.paths import RESERVED_PREFIX, is_safe_file_path, scoped_path, validate_file_path
from images.query import ImageQuery, parse_object_id
from images.renderers import dumps
from images.repository import ImageRepository
from images.spreadsheet import write_documents_xlsx
from images.storage import FileStore, is_storable_key
from images.uploads import inspect_image, validate_data

logger = logging.getLogger(__name__)

MANIFEST_JSON = "mongodb_data.json"
MANIFEST_XLSX = "mongodb_data.xlsx"
MISSING_JSON = "missing_files.json"
MANIFESTS = frozenset({MANIFEST_JSON, MANIFEST_XLSX, MISSING_JSON})
# Pieces of the zip are joined into writes of about this size (fewer, larger socket writes).
OUTPUT_CHUNK = 512 * 1024
READ_CHUNK = 1024 * 1024
# An imported entry is held in memory up to this size while it is hashed and inspected.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
DOCUMENT_BATCH = 500
# The response lists this many skipped entries in detail; `skippedCount` has the total.
MAX_REPORTED_SKIPS = 1000
MANIFEST_FIELDS_DROPPED = ("__v", "userId")


class Progress(Protocol):
    """What the archive classes report progress to (a tqdm bar fits)."""

    def reset(self, total: int | None = None) -> object: ...

    def update(self, n: int = 1) -> object: ...


def archive_file_name(moment: dt.datetime | None = None) -> str:
    moment = (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"images-{moment.strftime('%Y-%m-%dT%H%M%SZ')}.zip"


# --- export ----------------------------------------------------------------------------------
class ArchiveExporter:
    """The images selected by `query` as a zip, produced while it is sent."""

    def __init__(
        self,
        repository: ImageRepository,
        files: FileStore,
        query: ImageQuery,
        batch_size: int = 500,
        progress: Progress | None = None,
    ) -> None:
        self.repository = repository
        self.files = files
        # An archive always carries whole documents, whatever `select` asked for.
        self.query = replace(query, projection=None, select=None)
        self.batch_size = batch_size
        self.progress = progress
        self.exported = 0
        self.missing = 0

    def stream(self) -> Iterator[bytes]:
        return _coalesce(self._pieces(), OUTPUT_CHUNK)

    def _pieces(self) -> Iterator[bytes]:
        archive = ZipStream(compress_type=ZIP_STORED)
        data_keys: dict[str, None] = {}
        with tempfile.TemporaryDirectory(prefix="imagestore-export-") as scratch:
            documents_path = Path(scratch) / "documents.jsonl"
            missing_path = Path(scratch) / "missing.jsonl"
            with open(documents_path, "wb") as documents, open(missing_path, "wb") as missing:
                found = self.repository.find_resumable(self.query, self.batch_size)
                for document in prefetched(found, self.batch_size):
                    printed = to_api(document)
                    documents.write(dumps(printed) + b"\n")
                    if isinstance(printed.get("data"), dict):
                        data_keys.update(dict.fromkeys(printed["data"]))
                    problem = self._add_image(archive, printed.get("file"))
                    if problem:
                        self.missing += 1
                        report = {"_id": printed["_id"], "file": printed.get("file")}
                        missing.write(dumps({**report, "reason": problem}) + b"\n")
                    yield from archive.all_files()
                    self.exported += 1
                    if self.progress is not None:
                        self.progress.update(1)
            archive.add(_json_array(documents_path), MANIFEST_JSON, compress_type=ZIP_DEFLATED)
            yield from archive.all_files()
            xlsx_path = Path(scratch) / MANIFEST_XLSX
            write_documents_xlsx(documents_path, data_keys, xlsx_path)
            archive.add(_file_chunks(xlsx_path), MANIFEST_XLSX, compress_type=ZIP_DEFLATED)
            if self.missing:
                archive.add(_json_array(missing_path), MISSING_JSON, compress_type=ZIP_DEFLATED)
            yield from archive.finalize()

    def _add_image(self, archive: ZipStream, file: Any) -> str | None:
        """Queue the file at its path; return why it cannot be, if it cannot."""
        if not is_safe_file_path(file):
            return "unsafe file path"
        if file in MANIFESTS:
            return "name reserved for the archive's manifests"
        stored = self.files.stat(file)
        if stored is None:
            return "file not found in storage"
        chunks = self.files.read_chunks(file)
        try:
            # Opening the file now turns a file deleted since `stat` into a report, not a
            # broken archive.
            first = next(chunks, b"")
        except (FileNotFoundError, NotADirectoryError):
            return "file not found in storage"
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey"}:
                raise
            return "file not found in storage"
        archive.add(itertools.chain([first], chunks), file, size=stored.size)
        return None


def prefetched(items: Iterator[Any], ahead: int) -> Iterator[Any]:
    """`items`, produced by a background thread up to `ahead` in advance: the database answers
    for the next batch while the files of this one stream. Its errors are raised here."""
    buffer: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:
            put((_END, error))
        finally:
            with contextlib.suppress(Exception):
                items.close()

    thread = threading.Thread(target=produce, name="export-documents", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


_END = object()


def _json_array(jsonl_path: Path) -> Iterator[bytes]:
    """The lines of a JSON-lines file as one JSON array, read a block at a time."""
    yield b"["
    separator = b""
    with open(jsonl_path, "rb") as lines:
        while block := lines.readlines(READ_CHUNK):
            yield separator + b",".join(line.rstrip(b"\n") for line in block)
            separator = b","
    yield b"]"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(READ_CHUNK):
            yield chunk


def _coalesce(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Join small pieces (zip headers) into writes of about `size`; pass large ones through."""
    with contextlib.closing(pieces):
        buffer = bytearray()
        for piece in pieces:
            if len(piece) >= size:
                if buffer:
                    yield bytes(buffer)
                    buffer.clear()
                yield piece
                continue
            buffer += piece
            if len(buffer) >= size:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)


# --- import ----------------------------------------------------------------------------------
@dataclass
class ImportResult:
    file: str
    imported: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_count: int = 0

    def skip(self, entry: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_REPORTED_SKIPS:
            self.skipped.append({"entry": entry, "reason": reason})

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"file": self.file, "imported": self.imported}
        body["skipped"] = self.skipped
        if self.skipped_count > len(self.skipped):
            body["skippedCount"] = self.skipped_count
        return body


@dataclass
class ArchivePlan:
    """The entries of an archive, sorted out before anything is written."""

    images: list[zipfile.ZipInfo] = field(default_factory=list)
    manifest: zipfile.ZipInfo | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


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
    ) -> None:
        self.repository = repository
        self.files = files
        self.extra_data = extra_data or {}
        self.time = time
        self.batch_size = batch_size or DOCUMENT_BATCH
        self.progress = progress

    def run(self, archive_path: str | Path, name: str) -> ImportResult:
        result = ImportResult(file=name)
        with _open_zip(archive_path) as archive:
            plan = plan_archive(archive)
            for entry, reason in plan.skipped:
                result.skip(entry, reason)
            if self.progress is not None:
                self.progress.reset(total=len(plan.images))
            with tempfile.TemporaryDirectory(prefix="imagestore-import-") as scratch:
                index = ImportIndex(Path(scratch) / "index.sqlite3")
                try:
                    self._import(archive, plan, index, scratch, result)
                finally:
                    index.close()
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
        except _CORRUPT_ENTRY_ERRORS as error:
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
            facts = self._store_entry(archive, info, key, scratch, result)
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
    ) -> dict[str, Any] | None:
        """Store one entry at `key` and return its facts; None when it is skipped."""
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=scratch) as spool:
            sha256, size = _copy_entry(archive, info, spool)
            try:
                facts = inspect_image(spool, key)
            except BadRequest as error:
                result.skip(info.filename, str(error.detail))
                return None
            spool.seek(0)
            try:
                self.files.save(key, spool)
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                result.skip(info.filename, "its path conflicts with a stored file or folder")
                return None
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


def _open_zip(path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise BadRequest("The archive is not a readable zip file") from None


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
                raise BadRequest(f"{MANIFEST_JSON} is encrypted or uses an unsupported compression")
            plan.manifest = info
        elif reason := _skip_reason(info):
            plan.skipped.append((name, reason))
        else:
            plan.images.append(info)
    return plan


def check_entry_name(name: str) -> None:
    """400 for a name that would leave the storage root: absolute, `..`, backslash, drive..."""
    path = name[:-1] if name.endswith("/") else name
    if path == RESERVED_PREFIX or is_storable_key(path):
        return
    try:
        validate_file_path(path, "archive entry")
    except BadRequest as error:
        raise BadRequest(f"Unsafe archive entry: {error.detail}") from None


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
_CORRUPT_ENTRY_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError)
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def _copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes]) -> tuple[str, int]:
    """Copy one entry, hashing it; a corrupt entry (bad CRC, truncated data) is a 400."""
    digest = hashlib.sha256()
    size = 0
    try:
        with archive.open(info) as entry:
            while chunk := entry.read(READ_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except _CORRUPT_ENTRY_ERRORS as error:
        raise BadRequest(f"The archive is corrupt at entry {info.filename!r}") from error
    return digest.hexdigest(), size


def manifest_items(stream: IO[bytes]) -> Iterator[Any]:
    """The items of a JSON array read as a stream (a block at a time); 400 if it is not one."""
    items = ijson.sendable_list()
    parser = ijson.items_coro(items, "item", use_float=True)
    started = False
    try:
        while block := stream.read(READ_CHUNK):
            if not started:
                head = block.lstrip(b" \t\r\n\xef\xbb\xbf")
                if head and not head.startswith(b"["):
                    raise BadRequest(f"{MANIFEST_JSON} must be a JSON array of documents")
                started = bool(head)
            parser.send(block)
            yield from items
            del items[:]
        if not started:
            raise BadRequest(f"{MANIFEST_JSON} is empty")
        parser.close()
    except ijson.JSONError as error:
        raise BadRequest(f"{MANIFEST_JSON} is not valid JSON") from error
    yield from items
