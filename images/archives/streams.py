"""What every export format shares: the writer's base (documents read ahead of it, counted as
they are written), stored files opened with a missing one turned into a reason, and small
output pieces joined into larger writes. Every document and every piece gives a gevent
worker's loop a turn once the export has held it for a slice (`images.runtime.offload`)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import queue
import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from images.archives.layout import READ_CHUNK, Progress
from images.core.paths import is_safe_file_path
from images.core.query import ImageQuery
from images.runtime.offload import cooperate
from images.store.files import FileStore
from images.store.repository import ImageRepository

# Pieces of an export are joined into writes of about this size (fewer, larger socket writes).
OUTPUT_CHUNK = 512 * 1024
FILE_NOT_FOUND = "file not found in storage"
UNSAFE_PATH = "unsafe file path"


_OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def id_key(image_id: Any) -> str:
    """An image's `_id` as a name part: its 24 hex digits, or for an `_id` of another kind
    (documents written by other services) a digest of it, so no `_id` brings a dot, a slash or
    `..` into an archive's names."""
    text = str(image_id)
    if _OBJECT_ID.match(text):
        return text
    return "id-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class UnreadableFile(Exception):
    """A document's file cannot be exported; the message says why."""


@dataclass
class OpenedFile:
    size: int
    chunks: Iterator[bytes]


class StreamedExport:
    """The images selected by `query`, written by `_pieces` while the result is sent."""

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

    def stream(self) -> Generator[bytes, None, None]:
        return coalesce(self._pieces(), OUTPUT_CHUNK)

    def _pieces(self) -> Generator[bytes, None, None]:
        raise NotImplementedError

    def _documents(self) -> Iterator[dict[str, Any]]:
        """The selected documents, each counted once the writer has taken it in."""
        found = self.repository.find_resumable(self.query, self.batch_size)
        for document in prefetched(found, self.batch_size):
            cooperate()  # documents read ahead are taken without a wait: a turn for the loop
            yield document
            self.exported += 1
            if self.progress is not None:
                self.progress.update(1)


def open_stored(files: FileStore, file: Any) -> OpenedFile:
    """The stored file at `file`, already opened; UnreadableFile when it cannot be."""
    if not is_safe_file_path(file):
        raise UnreadableFile(UNSAFE_PATH)
    stored = files.stat(file)
    if stored is None:
        raise UnreadableFile(FILE_NOT_FOUND)
    chunks = files.read_chunks(file)
    try:
        # Opening the file now turns a file deleted since `stat` into a report, not a
        # broken archive.
        first = next(chunks, b"")
    except (FileNotFoundError, NotADirectoryError):
        raise UnreadableFile(FILE_NOT_FOUND) from None
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey"}:
            raise
        raise UnreadableFile(FILE_NOT_FOUND) from None
    return OpenedFile(stored.size, itertools.chain([first], chunks))


def prefetched(items: Generator[Any, None, None], ahead: int) -> Iterator[Any]:
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


def json_array(jsonl_path: Path) -> Iterator[bytes]:
    """The lines of a JSON-lines file as one JSON array, read a block at a time."""
    yield b"["
    separator = b""
    with open(jsonl_path, "rb") as lines:
        while block := lines.readlines(READ_CHUNK):
            yield separator + b",".join(line.rstrip(b"\n") for line in block)
            separator = b","
    yield b"]"


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(READ_CHUNK):
            yield chunk


def coalesce(pieces: Generator[bytes, None, None], size: int) -> Generator[bytes, None, None]:
    """Join small pieces (archive headers) into writes of about `size`; pass large ones
    through."""
    with contextlib.closing(pieces):
        buffer = bytearray()
        for piece in pieces:
            # A client that reads as fast as it is sent never makes the socket wait: every
            # piece (read, checksummed, compressed on the loop) gives the loop a turn.
            cooperate()
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
