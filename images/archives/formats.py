"""The formats of `GET /export` and a writer for each (images.api.export_parameters reads the
`format`, `by` and `split` parameters).

`zip` (the default) is the original's archive; `webdataset`, `imagefolder` and `jsonl` are
the training-ready ones. Every format takes the same query parameters as `GET /images`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

from images.archives.imagefolder import ImageFolderExporter
from images.archives.jsonl import JsonLinesExporter
from images.archives.layout import Progress
from images.archives.webdataset import WebDatasetExporter
from images.archives.zip_export import ArchiveExporter
from images.core.query import ImageQuery
from images.store.files import FileStore
from images.store.repository import ImageRepository

# Parameters of /export that select no images (every other one is part of the query).
EXPORT_OPTIONS = ("format", "by", "split")
DEFAULT_FORMAT = "zip"
DEFAULT_LABEL_FIELD = "label"


class Exporter(Protocol):
    exported: int
    missing: int

    def stream(self) -> Generator[bytes, None, None]: ...


@dataclass(frozen=True)
class ExportRequest:
    format: ExportFormat
    query: ImageQuery
    by: str = DEFAULT_LABEL_FIELD
    split: str | None = None

    def exporter(
        self, repository: ImageRepository, files: FileStore, progress: Progress | None = None
    ) -> Exporter:
        return self.format.build(self, repository, files, progress)


Build = Callable[[ExportRequest, ImageRepository, FileStore, Progress | None], Exporter]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    media_type: str
    extension: str
    build: Build


def _zip(request: ExportRequest, repository, files, progress) -> Exporter:
    return ArchiveExporter(repository, files, request.query, progress=progress)


def _webdataset(request: ExportRequest, repository, files, progress) -> Exporter:
    return WebDatasetExporter(repository, files, request.query, progress=progress)


def _imagefolder(request: ExportRequest, repository, files, progress) -> Exporter:
    return ImageFolderExporter(
        repository, files, request.query, by=request.by, split=request.split, progress=progress
    )


def _jsonl(request: ExportRequest, repository, files, progress) -> Exporter:
    return JsonLinesExporter(repository, request.query, progress=progress)


FORMATS = {
    item.name: item
    for item in (
        ExportFormat("zip", "application/zip", "zip", _zip),
        ExportFormat("webdataset", "application/x-tar", "tar", _webdataset),
        ExportFormat("imagefolder", "application/zip", "zip", _imagefolder),
        ExportFormat("jsonl", "application/x-ndjson", "jsonl", _jsonl),
    )
}
