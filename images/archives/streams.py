"""What every export format shares: the writer's base (documents read ahead of it, counted as
they are written), stored files opened with a missing one turned into a reason, and small
output pieces joined into larger writes. Every document and every piece gives a gevent
worker's loop a turn once the export has held it for a slice (`images.runtime.offload`)."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings

from images.archives.layout import READ_CHUNK, Progress
from images.core.paths import is_safe_file_path
from images.core.query import ImageQuery
from images.runtime.chunks import coalesce
from images.runtime.memory import TRIM_ABOVE, return_freed_memory
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
        self.read_bytes = 0

    def stream(self) -> Generator[bytes, None, None]:
        """The export's bytes; once they end (or the answer is closed early) after more than
        TRIM_ABOVE bytes of documents were read, the freed heap goes back to the system."""
        pieces = coalesce(self._pieces(), OUTPUT_CHUNK)
        try:
            yield from pieces
        finally:
            pieces.close()
            if self.read_bytes > TRIM_ABOVE:
                return_freed_memory()

    def _pieces(self) -> Generator[bytes, None, None]:
        raise NotImplementedError

    def _documents(self) -> Iterator[dict[str, Any]]:
        """The selected documents, each counted once the writer has taken it in; read ahead
        of the writer by at most `batch_size` documents and DOCUMENT_BUFFER_SIZE bytes."""
        found = self.repository.find_resumable(self.query, self.batch_size)
        budget = settings.DOCUMENT_BUFFER_SIZE
        for document, size in prefetched(found, self.batch_size, budget):
            cooperate()  # documents read ahead are taken without a wait: a turn for the loop
            self.read_bytes += size
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


def prefetched(
    items: Generator[tuple[Any, int], None, None], ahead: int, budget: int
) -> Iterator[tuple[Any, int]]:
    """`items` (pairs of an item and its size in bytes), produced by a background thread up to
    `ahead` of them or `budget` bytes in advance, whichever comes first (always one): the
    database answers for the next batch while the files of this one stream, and a reader that
    stalls holds no more than that. Its errors are raised here."""
    buffer = _ReadAhead(ahead, budget)

    def produce() -> None:
        try:
            for item, size in items:
                if not buffer.put(item, size):
                    return
            buffer.put(_END, 0)
        except BaseException as error:
            buffer.put(_END, 0, error)
        finally:
            with contextlib.suppress(Exception):
                items.close()

    thread = threading.Thread(target=produce, name="export-documents", daemon=True)
    thread.start()
    try:
        while True:
            item, size, error = buffer.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item, size
    finally:
        buffer.stop()
        thread.join()


class _ReadAhead:
    """What `prefetched` holds: items in order, at most `ahead` of them and `budget` bytes."""

    def __init__(self, ahead: int, budget: int) -> None:
        self.ahead = max(1, ahead)
        self.budget = budget
        self.items: collections.deque[tuple[Any, int, BaseException | None]] = collections.deque()
        self.held = 0
        self.stopped = False
        self.changed = threading.Condition()

    def put(self, item: Any, size: int, error: BaseException | None = None) -> bool:
        """Wait for room, then add; False once the reader stopped."""
        with self.changed:
            while not self.stopped and self.items and not self._room_for(size):
                self.changed.wait()
            if self.stopped:
                return False
            self.items.append((item, size, error))
            self.held += size
            self.changed.notify_all()
            return True

    def get(self) -> tuple[Any, int, BaseException | None]:
        with self.changed:
            while not self.items:
                self.changed.wait()
            item, size, error = self.items.popleft()
            self.held -= size
            self.changed.notify_all()
            return item, size, error

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.items.clear()
            self.changed.notify_all()

    def _room_for(self, size: int) -> bool:
        return len(self.items) < self.ahead and self.held + size <= self.budget


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
