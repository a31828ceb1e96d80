"""`GET /export?format=webdataset`: the selected images as a tar of WebDataset samples.

Each image is one sample of two members, `<key>.jpg` (its bytes, whatever their format) then
`<key>.json` (its document as the API prints it, with every key any selected document has,
null where it lacks one). One image key and one set of JSON keys in every sample is what
loaders that infer a schema from the first samples need (Hugging Face's `webdataset` builder
reads the first five); decoders open the bytes by their content, and the document's `format`
says which it is. The key is the image's `_id`: stable from one export to the next, unique, and
free of the dots and slashes WebDataset reads as the end of a key. Bytes that are not an image
(stored with ALLOW_NON_IMAGES) are `<key>.bin`. Images whose file cannot be read are left out;
their documents and the reason are listed at the end in `__imagestore__/missing_files.json`, a
name WebDataset skips as metadata.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import tarfile
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

from images.api.renderers import dumps
from images.archives.layout import READ_CHUNK
from images.archives.sample_keys import SampleKeys, survey_keys
from images.archives.streams import (
    StreamedExport,
    UnreadableFile,
    file_chunks,
    id_key,
    open_stored,
)
from images.core.documents import to_api
from images.runtime.offload import cooperate

MISSING_MEMBER = "__imagestore__/missing_files.json"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
# A file is copied aside before its header is written, so that the size in the header is the
# size of the bytes that follow even if the stored file changes meanwhile.
SPOOL_IN_MEMORY = 8 * 1024 * 1024

IMAGE_KEY = "jpg"
FALLBACK_EXTENSION = "bin"
# Stored names that say "image" when a document has no decoded `format` (other services').
IMAGE_SUFFIXES = frozenset(
    {"jpg", "jpeg", "png", "gif", "webp", "tif", "tiff", "bmp", "ppm", "ico", "jp2", "avif"}
)


def sample_extension(document: dict[str, Any]) -> str:
    """The member extension of a document's bytes: `jpg` for every image."""
    if document.get("format"):
        return IMAGE_KEY
    file = document.get("file")
    suffix = posixpath.splitext(file)[1][1:].lower() if isinstance(file, str) else ""
    return IMAGE_KEY if suffix in IMAGE_SUFFIXES else FALLBACK_EXTENSION


class WebDatasetExporter(StreamedExport):
    """The images selected by `query` as a WebDataset tar, produced while it is sent."""

    def _pieces(self) -> Generator[bytes, None, None]:
        keys = survey_keys(self.repository, self.query)
        tar = TarStream()
        with tempfile.TemporaryDirectory(prefix="imagestore-export-") as scratch:
            missing_path = Path(scratch) / "missing.json"
            with open(missing_path, "wb") as missing:
                for document in self._documents():
                    try:
                        yield from self._sample(tar, document, keys, scratch)
                    except UnreadableFile as problem:
                        report = {"_id": str(document["_id"]), "file": document.get("file")}
                        missing.write(b"," if self.missing else b"[")
                        missing.write(dumps({**report, "reason": str(problem)}))
                        self.missing += 1
                if self.missing:
                    missing.write(b"]")
            if self.missing:
                size = missing_path.stat().st_size
                yield from tar.member(MISSING_MEMBER, size, file_chunks(missing_path))
            yield tar.end()

    def _sample(
        self, tar: TarStream, document: dict[str, Any], keys: SampleKeys, scratch: str
    ) -> Iterator[bytes]:
        printed = keys.fill(to_api(document))
        key = id_key(document.get("_id"))
        mtime = _timestamp(document.get("time"))
        opened = open_stored(self.files, document.get("file"))
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=scratch) as spool:
            size = _copy(opened.chunks, spool)
            spool.seek(0)
            image = f"{key}.{sample_extension(document)}"
            yield from tar.member(image, size, _read_all(spool), mtime)
        described = dumps(printed)
        yield from tar.member(f"{key}.json", len(described), iter([described]), mtime)


class TarStream:
    """A POSIX tar written member by member, as bytes to send."""

    def __init__(self) -> None:
        self.offset = 0

    def member(self, name: str, size: int, chunks: Iterator[bytes], mtime: int = 0):
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = mtime
        info.mode = 0o644
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")
        yield header
        yield from chunks
        padding = b"\0" * (-size % BLOCK)
        yield padding
        self.offset += len(header) + size + len(padding)

    def end(self) -> bytes:
        """Two zero blocks, then zeros up to a whole record, as tar itself ends an archive."""
        closing = 2 * BLOCK
        closing += -(self.offset + closing) % RECORD
        self.offset += closing
        return b"\0" * closing


def _copy(chunks: Iterator[bytes], out: IO[bytes]) -> int:
    size = 0
    try:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
            cooperate()
    except (FileNotFoundError, NotADirectoryError):
        raise UnreadableFile("file removed from storage while it was read") from None
    return size


def _read_all(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(READ_CHUNK):
        yield chunk


def _timestamp(value: Any) -> int:
    return int(value.timestamp()) if isinstance(value, dt.datetime) else 0
