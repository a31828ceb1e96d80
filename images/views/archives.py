"""`GET /export` (a zip streamed as it is made) and `POST /import` (a zip in field `archive`)."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.archives import ArchiveExporter, ArchiveImporter, archive_file_name
from images.exceptions import BadRequest, PayloadTooLarge
from images.query import QUERY_PARAMETERS, parse_query
from images.schemas import ERROR, IMPORT_REQUEST_SCHEMA, IMPORT_RESULT_SCHEMA
from images.scope import repository_for
from images.storage import get_file_store
from images.uploads import MULTIPART_OVERHEAD, parse_metadata
from images.views.images import single_file

ARCHIVE_FIELD = "archive"


class ArchiveUploadHandler(TemporaryFileUploadHandler):
    """Spools the archive to a temporary file in large chunks, within MAX_IMPORT_SIZE."""

    chunk_size = 1024 * 1024

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.MAX_IMPORT_SIZE
        if limit and content_length and content_length > limit + MULTIPART_OVERHEAD:
            raise PayloadTooLarge(f"Archive exceeds the limit of {limit} bytes")

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.received += len(raw_data)
        limit = settings.MAX_IMPORT_SIZE
        if limit and self.received > limit:
            raise PayloadTooLarge(f"Archive exceeds the limit of {limit} bytes")
        return super().receive_data_chunk(raw_data, start)


class ExportView(APIView):
    @extend_schema(
        summary="Export the matching images and their documents as a zip (streamed)",
        parameters=QUERY_PARAMETERS,
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            400: ERROR,
            503: ERROR,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = parse_query(request.query_params, default_limit=0)
        exporter = ArchiveExporter(repository_for(request), get_file_store(), query)
        response = StreamingHttpResponse(
            _started(exporter.stream()), content_type="application/zip"
        )
        return _export_headers(response)

    @extend_schema(exclude=True)
    def head(self, request: Request) -> HttpResponse:
        """The export's headers without making it (the query is still checked)."""
        parse_query(request.query_params, default_limit=0)
        return _export_headers(HttpResponse(content_type="application/zip"))


def _export_headers(response: HttpResponse) -> HttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{archive_file_name()}"'
    response["Cache-Control"] = "no-store"
    return response


class ImportView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        summary="Import a zip archive: images at their paths, documents from mongodb_data.json",
        request={"multipart/form-data": IMPORT_REQUEST_SCHEMA},
        responses={
            200: IMPORT_RESULT_SCHEMA,
            400: ERROR,
            413: ERROR,
            503: ERROR,
        },
    )
    def post(self, request: Request) -> Response:
        request._request.upload_handlers = [ArchiveUploadHandler(request._request)]
        archive = single_file(request, ARCHIVE_FIELD)
        try:
            meta = parse_metadata(request.POST)
            if meta.file is not None or meta.image_id is not None:
                raise BadRequest("'file' and '_id' cannot be given for a whole archive")
            importer = ArchiveImporter(
                repository_for(request), get_file_store(), extra_data=meta.data, time=meta.time
            )
            result = importer.run(archive.temporary_file_path(), archive.name or "")
        finally:
            archive.close()
        return Response(result.as_json())


def _started(stream: Iterator[bytes]) -> Iterator[bytes]:
    """Run the stream up to its first bytes now, while an error can still be a 4xx answer."""
    first = next(stream, b"")

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from stream
        finally:
            stream.close()

    return body()
