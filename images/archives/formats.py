"""The formats of `GET /export`: the `format` and `by` parameters, and a writer for each.

`zip` (the default) is the original's archive; `webdataset`, `imagefolder` and `jsonl` are
the training-ready ones. Every format takes the same query parameters as `GET /images`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from django.http import QueryDict

from images.archives.folder_names import parse_label_field
from images.archives.imagefolder import ImageFolderExporter
from images.archives.jsonl import JsonLinesExporter
from images.archives.layout import Progress
from images.archives.webdataset import WebDatasetExporter
from images.archives.zip_export import ArchiveExporter
from images.core.errors import InvalidInput
from images.core.query import ImageQuery, parse_query
from images.store.files import FileStore
from images.store.repository import ImageRepository

# Parameters of /export that select no images (every other one is part of the query).
EXPORT_OPTIONS = ("format", "by")
DEFAULT_FORMAT = "zip"
DEFAULT_LABEL_FIELD = "label"


class Exporter(Protocol):
    exported: int
    missing: int

    def stream(self) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class ExportRequest:
    format: ExportFormat
    query: ImageQuery
    by: str = DEFAULT_LABEL_FIELD

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
    return ImageFolderExporter(repository, files, request.query, by=request.by, progress=progress)


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


def parse_export(params: QueryDict) -> ExportRequest:
    """The format, its options and the query of an export; 400 naming a bad parameter."""
    name = _single(params, "format") or DEFAULT_FORMAT
    export_format = FORMATS.get(name)
    if export_format is None:
        raise InvalidInput(
            f"Parameter 'format' must be one of {', '.join(FORMATS)}, got {name[:40]!r}"
        )
    by = _single(params, "by")
    if by is not None and export_format.name != "imagefolder":
        raise InvalidInput("Parameter 'by' applies to format=imagefolder only")
    selection = params.copy()
    for parameter in EXPORT_OPTIONS:
        selection.pop(parameter, None)
    query = parse_query(selection, default_limit=0)
    by = parse_label_field(DEFAULT_LABEL_FIELD if by is None else by)
    return ExportRequest(export_format, query, by)


def _single(params: QueryDict, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise InvalidInput(f"Parameter '{name}' may be given once")
    return values[0] if values else None
