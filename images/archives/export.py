"""The streamed export: the images selected by a query, then their manifests, as one zip."""

from __future__ import annotations

import contextlib
import itertools
import queue
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from images.archives.layout import (
    MANIFEST_JSON,
    MANIFEST_XLSX,
    MANIFESTS,
    MISSING_JSON,
    READ_CHUNK,
    Progress,
)
from images.archives.spreadsheet import write_documents_xlsx
from images.documents import to_api
from images.paths import is_safe_file_path
from images.query import ImageQuery
from images.renderers import dumps
from images.repository import ImageRepository
from images.storage import FileStore

# Pieces of the zip are joined into writes of about this size (fewer, larger socket writes).
OUTPUT_CHUNK = 512 * 1024


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
