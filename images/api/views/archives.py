"""`GET /export` (an archive streamed as it is made, in the format asked for) and `POST /import`
(a zip in field `archive`)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.duplicate_parameters import CopyCheckParameters
from images.api.export_parameters import EXPORT_PARAMETERS, export_request
from images.api.openapi import (
    EXPORT_RESPONSES,
    IMPORT_REQUEST_SCHEMA,
    IMPORT_RESPONSES,
)
from images.api.parameters import validated
from images.api.scope import repository_for
from images.api.views.images import single_file
from images.archives import ArchiveImporter, ExportRequest, archive_file_name
from images.core.errors import InvalidInput, TooLarge
from images.duplicates.policy import PARAMETER as ON_DUPLICATE
from images.duplicates.policy import SIMILAR
from images.runtime.offload import cooperate, run_off_loop
from images.store.files import get_file_store
from images.writes.uploads import MULTIPART_OVERHEAD, parse_metadata

ARCHIVE_FIELD = "archive"


class ArchiveUploadHandler(TemporaryFileUploadHandler):
    """Spools the archive to a temporary file in large chunks, within MAX_IMPORT_SIZE."""

    chunk_size = 1024 * 1024

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.MAX_IMPORT_SIZE
        if limit and content_length and content_length > limit + MULTIPART_OVERHEAD:
            raise TooLarge(f"Archive exceeds the limit of {limit} bytes")

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        limit = settings.MAX_IMPORT_SIZE
        if limit and self.received > limit:
            raise TooLarge(f"Archive exceeds the limit of {limit} bytes")
        cooperate()  # a fast client's body is always there to read: give the loop a turn
        return super().receive_data_chunk(raw_data, start)


_Response = TypeVar("_Response", bound=HttpResponseBase)


class ExportView(APIView):
    @extend_schema(
        summary="Export the matching images and their documents (streamed)",
        description=(
            "`format=zip` (default): the original's archive. `webdataset`: a tar of samples "
            "`<_id>.jpg` + `<_id>.json`. `imagefolder`: a zip of `[<data.<split>>/]"
            "<data.<by>>/<name>` folders (`_unlabelled/` without a value) and "
            "`metadata.jsonl`. `jsonl`: the "
            "documents only, one per line (honours `select`)."
        ),
        parameters=EXPORT_PARAMETERS,
        responses=EXPORT_RESPONSES,
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        export = export_request(request.query_params)
        exporter = export.exporter(repository_for(request), get_file_store())
        response = StreamingHttpResponse(
            _started(exporter.stream()), content_type=export.format.media_type
        )
        return _export_headers(response, export)

    @extend_schema(exclude=True)
    def head(self, request: Request) -> HttpResponse:
        """The export's headers without making it (the query is still checked)."""
        export = export_request(request.query_params)
        return _export_headers(HttpResponse(content_type=export.format.media_type), export)


def _export_headers(response: _Response, export: ExportRequest) -> _Response:
    name = archive_file_name(extension=export.format.extension)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


class ImportView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        summary="Import a zip archive: images at their paths, documents from mongodb_data.json",
        request={"multipart/form-data": IMPORT_REQUEST_SCHEMA},
        responses=IMPORT_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        request._request.upload_handlers = [ArchiveUploadHandler(request._request)]
        # ArchiveUploadHandler keeps every upload in a temporary file.
        archive = cast(TemporaryUploadedFile, single_file(request, ARCHIVE_FIELD))
        try:
            checks = _copy_checks(request)
            meta = parse_metadata(request.POST, ignore=(ON_DUPLICATE, SIMILAR))
            if meta.file is not None or meta.image_id is not None:
                raise InvalidInput("'file' and '_id' cannot be given for a whole archive")
            importer = ArchiveImporter(
                repository_for(request),
                get_file_store(),
                extra_data=meta.data,
                time=meta.time,
                on_duplicate=checks.get("on_duplicate"),
                similar=checks.get("similar"),
            )
            result = importer.run(archive.temporary_file_path(), archive.name or "")
        finally:
            run_off_loop(archive.close)  # removing a big temporary file frees its blocks
        return Response(result.as_json())


def _copy_checks(request: Request) -> dict[str, Any]:
    """`on_duplicate` and `similar` of the form, else of the query string."""
    given = {name for name in (ON_DUPLICATE, SIMILAR) if name in request.POST}
    source = request.POST if given else request.query_params
    return validated(CopyCheckParameters, source)


def _started(stream: Generator[bytes, None, None]) -> Iterator[bytes]:
    """Run the stream up to its first bytes now, while an error can still be a 4xx answer."""
    first = next(stream, b"")

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from stream
        finally:
            stream.close()

    return body()
