"""The `/images` routes: the collection (list, upload, bulk update, bulk delete) and one image."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from images.api.document_lists import as_printed, hold, json_body, printed, streamed_body
from images.api.filters import ImageQueryFilter
from images.api.openapi import (
    BULK_DELETE_RESPONSES,
    BULK_UPDATE_RESPONSES,
    DELETE_RESPONSES,
    DOWNLOAD_RESPONSES,
    EDIT_RESPONSES,
    ID_PARAMETER,
    IMAGE_RESPONSES,
    LIST_RESPONSES,
    PATCH_BODY,
    PATCH_EXAMPLES,
    PUT_EXAMPLES,
    THUMBNAIL_RESPONSES,
    UPLOAD_RESPONSES,
    UPLOAD_SCHEMA,
)
from images.api.parameters import validated
from images.api.parsers import BoundedJSONParser
from images.api.renderers import dumps
from images.api.responses import served_content_type, stored_file_response
from images.api.scope import repository_for
from images.api.thumbnail_parameters import ThumbnailParameters, thumbnail_size
from images.api.upload_parameters import UploadParameters, copy_checks
from images.core.documents import to_api
from images.core.errors import ImageNotFound, InvalidInput
from images.core.query import (
    EVERY_IMAGE_PARAM,
    ImageQuery,
    check_bulk_selection,
    parse_object_id,
)
from images.core.updates import build_patch, build_replace
from images.limits.documents import growth_conditions, refuse_growth
from images.store.files import FileStore, get_file_store
from images.store.repository import ImageRepository
from images.thumbnails import thumbnail_response
from images.writes import Deleter
from images.writes.uploads import MetadataMode, UploadStore, parse_metadata

logger = logging.getLogger(__name__)

# Above this many items a list is streamed instead of rendered at once.
STREAM_LIST_ABOVE = 1000
# Documents a batch of a streamed list asks for (fewer when they are large: find_weighed).
LIST_BATCH = 500
DELETE_BATCH = 1000


class ImageViewSet(viewsets.ViewSet):
    parser_classes = [BoundedJSONParser, MultiPartParser]

    # --- collection -------------------------------------------------------------------------
    @extend_schema(
        summary="List images",
        operation_id="images_list",
        parameters=ImageQueryFilter.parameters,
        responses=LIST_RESPONSES,
    )
    def list_images(self, request: Request) -> HttpResponseBase:
        # Not named `list`: the response is one object, not the array DRF's `list` implies.
        # Bounded by bytes (images.api.document_lists): a page whose printed documents fit
        # DOCUMENT_BUFFER_SIZE is answered whole; past it, or with a limit over
        # STREAM_LIST_ABOVE, the answer streams.
        query = ImageQueryFilter().query(request.query_params)
        repository = repository_for(request)
        tail = {"select": query.select} if query.select else {}
        if 0 < query.limit <= STREAM_LIST_ABOVE:
            found = printed(repository.find_weighed(query, query.limit, as_printed))
            held = hold(found, settings.DOCUMENT_BUFFER_SIZE)
            if held.complete:
                total = _list_total(repository, query, len(held.items))
                head = {"total": total, "skip": query.skip, "limit": query.limit}
                whole = json_body(head, "items", held.items, tail)
                return HttpResponse(whole, content_type="application/json")
            items = held.all()
        else:
            items = printed(repository.find_weighed(query, LIST_BATCH, as_printed))
        try:
            total = repository.count(query.filter)
        except BaseException:
            items.close()
            raise
        head = {"total": total, "skip": query.skip, "limit": query.limit}
        body = streamed_body(head, "items", items, tail)
        return StreamingHttpResponse(body, content_type="application/json")

    @extend_schema(
        summary="Upload an image",
        parameters=[UploadParameters],
        request={"multipart/form-data": UPLOAD_SCHEMA},
        responses=UPLOAD_RESPONSES,
    )
    def create(self, request: Request) -> Response:
        if not (request.content_type or "").startswith("multipart/form-data"):
            # As the original: any other body is an upload without a file.
            raise InvalidInput(
                "File not provided: send multipart/form-data with the file in 'image'"
            )
        parameters = validated(UploadParameters, request.query_params)
        upload = single_file(request, "image")
        meta = parse_metadata(request.POST)
        meta.mode = parameters.get("metadata", MetadataMode.REPLACE)
        digests = request._request.__dict__.get("upload_digests", {}).get("image")
        store = UploadStore(repository_for(request), get_file_store())
        checks = copy_checks(parameters)
        document = store.store(upload, meta, digests[0] if digests else None, checks)
        return Response(to_api(document))

    @extend_schema(
        summary="Update the data of every matching image",
        operation_id="images_bulk_update",
        parameters=ImageQueryFilter.bulk_parameters,
        request=PATCH_BODY,
        examples=PATCH_EXAMPLES,
        responses=BULK_UPDATE_RESPONSES,
    )
    def bulk_update(self, request: Request) -> Response:
        query = _bulk_selection(request)
        update = build_patch(_json_body(request))
        if not update:
            return Response(_update_result(False, 0, 0))
        repository = repository_for(request)
        result = repository.update_many(
            _within_data_limit(repository, query.filter, update), update
        )
        return Response(_update_result(True, result.matched_count, result.modified_count))

    @extend_schema(
        summary="Delete every matching image and its file",
        operation_id="images_bulk_destroy",
        parameters=ImageQueryFilter.bulk_parameters,
        responses=BULK_DELETE_RESPONSES,
    )
    def bulk_destroy(self, request: Request) -> Response:
        query = _bulk_selection(request)
        repository = repository_for(request)
        deleted = delete_matching(repository, get_file_store(), query)
        logger.info(
            "Bulk delete by %s: filter=%s deleted=%d",
            repository.owner or "-",
            dumps(query.filter).decode(),
            deleted,
        )
        return Response({"acknowledged": True, "deletedCount": deleted})

    # --- one image --------------------------------------------------------------------------
    @extend_schema(
        summary="Get one image's document", parameters=[ID_PARAMETER], responses=IMAGE_RESPONSES
    )
    def retrieve(self, request: Request, pk: str) -> HttpResponse:
        # The bytes DRF's Response would render, without its template response (rendered
        # later, counted by template in the metrics): 40 us of a 0.4 ms request.
        document = to_api(_get_or_404(repository_for(request), pk))
        return HttpResponse(dumps(document), content_type="application/json")

    @extend_schema(
        summary="Update one image's data ($set by key, `$unset` to remove)",
        parameters=[ID_PARAMETER],
        request=PATCH_BODY,
        examples=PATCH_EXAMPLES,
        responses=EDIT_RESPONSES,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        image_id = parse_object_id(pk)
        update = build_patch(_json_body(request))
        repository = repository_for(request)
        if not update:
            return Response(to_api(_get_or_404(repository, pk)))
        document = repository.update_one(
            image_id, update, _within_data_limit(repository, {"_id": image_id}, update)
        )
        if document is None:
            raise ImageNotFound(pk)
        return Response(to_api(document))

    @extend_schema(
        summary="Replace one image's data",
        parameters=[ID_PARAMETER],
        request=PATCH_BODY,
        examples=PUT_EXAMPLES,
        responses=EDIT_RESPONSES,
    )
    def update(self, request: Request, pk: str) -> Response:
        image_id = parse_object_id(pk)
        if not request.content_type:
            raise InvalidInput("Request body must be a JSON object")
        update = build_replace(_json_body(request))
        document = repository_for(request).update_one(image_id, update)
        if document is None:
            raise ImageNotFound(pk)
        return Response(to_api(document))

    @extend_schema(
        summary="Delete one image and its file",
        parameters=[ID_PARAMETER],
        responses=DELETE_RESPONSES,
    )
    def destroy(self, request: Request, pk: str) -> Response:
        image_id = parse_object_id(pk)
        if Deleter(repository_for(request), get_file_store()).delete_one(image_id) is None:
            raise ImageNotFound(pk)
        return Response({"_id": pk})

    @extend_schema(
        summary="Download the image file (Range, HEAD, ETag supported)",
        parameters=[ID_PARAMETER],
        responses=DOWNLOAD_RESPONSES,
    )
    def download(self, request: Request, pk: str) -> HttpResponseBase:
        document = _get_or_404(repository_for(request), pk)
        content_type = served_content_type(document)
        response = stored_file_response(request, get_file_store(), document["file"], content_type)
        if response is None:
            raise ImageNotFound(f"{pk} file")
        return response

    @extend_schema(
        summary="A thumbnail (max edge `size`: 64, 128, 256 or 512; WebP or JPEG by Accept)",
        parameters=[ID_PARAMETER, ThumbnailParameters],
        responses=THUMBNAIL_RESPONSES,
    )
    def thumbnail(self, request: Request, pk: str) -> HttpResponseBase:
        image_id = parse_object_id(pk)
        size = thumbnail_size(request.query_params)
        files = get_file_store()
        return thumbnail_response(request, repository_for(request), files, pk, image_id, size)


def _list_total(repository: ImageRepository, query: ImageQuery, found: int) -> int:
    """The number of matches; counted by the database only when the page does not tell it.

    A short page that is not past the end holds the last match, so skip + found is the total
    (the count is a second pass over the matches: half of a filtered list's database time).
    """
    if found < query.limit and (found or not query.skip):
        return query.skip + found
    return repository.count(query.filter)


def _bulk_selection(request: Request) -> ImageQuery:
    check_bulk_selection(dict(request.query_params.lists()))
    return ImageQueryFilter(options=(EVERY_IMAGE_PARAM,)).query(request.query_params)


def _within_data_limit(
    repository: ImageRepository, query_filter: dict[str, Any], update: dict[str, Any]
) -> dict[str, Any]:
    """The filter narrowed to the documents the update keeps within MAX_DATA_SIZE; 413 (and
    nothing written) when it would take a matched document over it."""
    conditions = growth_conditions(update)
    if conditions is None:
        return query_filter
    fits, outgrows = conditions
    over = repository.first_id_where(query_filter, outgrows)
    if over is not None:
        raise refuse_growth(over)
    return {"$and": [query_filter, fits]}


def _get_or_404(repository: ImageRepository, pk: str) -> dict[str, Any]:
    document = repository.get(parse_object_id(pk))
    if document is None:
        raise ImageNotFound(pk)
    return document


def _require_media_type(request: Request, media_type: str) -> None:
    content_type = request.content_type or ""
    if not content_type.startswith(media_type):
        raise UnsupportedMediaType(content_type, f"Send the request body as {media_type}")


def _json_body(request: Request) -> Any:
    """The parsed JSON body; an empty body is an empty object."""
    if not request.content_type:
        return {}
    _require_media_type(request, "application/json")
    return request.data


def single_file(request: Request, field: str) -> UploadedFile:
    """The one file of a multipart request, sent in `field`; 400 for anything else."""
    files = request.FILES
    unexpected = [name for name in files if name != field]
    if unexpected:
        raise InvalidInput(f"Unexpected file field {unexpected[0]!r}: send the file as '{field}'")
    uploads = files.getlist(field)
    if not uploads:
        raise InvalidInput(f"File not provided: send it in the multipart field '{field}'")
    if len(uploads) > 1:
        raise InvalidInput(f"Only one file may be sent in '{field}'")
    return uploads[0]


def _update_result(acknowledged: bool, matched: int, modified: int) -> dict[str, Any]:
    return {
        "acknowledged": acknowledged,
        "matchedCount": matched,
        "modifiedCount": modified,
        "upsertedId": None,
        "upsertedCount": 0,
    }


def delete_matching(repository: ImageRepository, files: FileStore, query: ImageQuery) -> int:
    """Delete the matching images in batches (never all ids in memory), through the write path."""
    deleter = Deleter(repository, files)
    deleted = 0
    batch: list[tuple[Any, str]] = []
    for target in repository.iter_files(query.filter):
        batch.append(target)
        if len(batch) >= DELETE_BATCH:
            deleted += deleter.delete_many(batch)
            batch = []
    if batch:
        deleted += deleter.delete_many(batch)
    return deleted
