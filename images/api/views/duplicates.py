"""Copies among the caller's images: the same bytes (`GET /images/duplicates`), near-copies by
perceptual hash (`?distance=N` there, `GET /images/<id>/similar`) and near-copies across the
values of a split field (`GET /images/leaks`)."""

from __future__ import annotations

import itertools
from collections.abc import Generator
from typing import Any

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.document_lists import hold, json_body, printed, streamed_body
from images.api.duplicate_parameters import (
    DuplicatePageParameters,
    LeakParameters,
    NearPageParameters,
    SimilarParameters,
)
from images.api.openapi import (
    DUPLICATES_RESPONSES,
    ID_PARAMETER,
    LEAKS_RESPONSES,
    SIMILAR_RESPONSES,
)
from images.api.parameters import validated
from images.api.renderers import dumps
from images.api.scope import repository_for
from images.core.documents import to_api
from images.core.errors import ImageNotFound, Unprocessable
from images.core.query import ImageQuery, parse_object_id
from images.duplicates import duplicate_groups
from images.duplicates.groups import DEFAULT_LIMIT
from images.duplicates.near_copies import NearCopy, near_copies
from images.duplicates.near_groups import DEFAULT_PAGE, leaks, near_groups
from images.duplicates.perceptual import DEFAULT_DISTANCE
from images.store.repository import ImageRepository


class DuplicateListView(APIView):
    @extend_schema(
        summary="Groups of images with the same bytes (sha256), or near-copies, a page at a time",
        description=(
            "Each group is `{sha256, count, items: [{_id, file}]}` (items oldest first, at most "
            "1,000; `count` is the full number). Groups come in sha256 order; pass `next` as "
            "`after` for the following page (`next` is null on the last page).\n\n"
            "With `distance=N`: near-copies by perceptual hash instead. Each group is `{phash, "
            "count, items: [{_id, file, distance}]}`: an image (first, distance 0) and every "
            "later image (by `_id`) within `N` bits of it, so each near pair is listed once, "
            "in the group of its older image. `after` and `next` are then image ids; a page "
            "scans a bounded number of images, so it may hold fewer than `limit` groups while "
            "`next` is not null: go on until it is."
        ),
        parameters=[DuplicatePageParameters, NearPageParameters],
        responses=DUPLICATES_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        if "distance" in request.query_params:
            return self._near(request)
        page = validated(DuplicatePageParameters, request.query_params)
        after, limit = page.get("after", ""), page.get("limit", DEFAULT_LIMIT)
        return Response(duplicate_groups(repository_for(request), after, limit).as_json())

    def _near(self, request: Request) -> Response:
        page = validated(NearPageParameters, request.query_params)
        within = page.get("distance", DEFAULT_DISTANCE)
        found = near_groups(
            repository_for(request),
            within,
            page.get("after") or None,  # blank: from the start
            page.get("limit", DEFAULT_PAGE),
        )
        return Response(found.as_json())


class SimilarImageListView(APIView):
    @extend_schema(
        summary="The caller's images that are near-copies of one image, nearest first",
        description=(
            "Every image whose perceptual hash (`phash`) differs from this one's in at most "
            "`distance` bits, as `GET /images/{id}` prints it plus its `distance`; nearest "
            "first, then oldest. The image itself is not listed. 422 when the image has no "
            "`phash` (its file is not a picture the service decodes)."
        ),
        parameters=[ID_PARAMETER, SimilarParameters],
        responses=SIMILAR_RESPONSES,
    )
    def get(self, request: Request, pk: str) -> HttpResponseBase:
        parameters = validated(SimilarParameters, request.query_params)
        repository = repository_for(request)
        image = repository.get(parse_object_id(pk))
        if image is None:
            raise ImageNotFound(pk)
        if not isinstance(image.get("phash"), str):
            raise Unprocessable(
                f"Image {pk} has no perceptual hash: its file is not a picture this service "
                "decodes (or `manage.py backfill_facts` has not reached it yet)"
            )
        within = parameters.get("distance", DEFAULT_DISTANCE)
        limit = parameters.get("limit", DEFAULT_PAGE)
        found = near_copies(repository, image["phash"], within, limit, exclude=image["_id"])
        # Bounded by bytes as `GET /images` is (images.api.document_lists).
        held = hold(_similar_items(repository, found), settings.DOCUMENT_BUFFER_SIZE)
        head = {"distance": within}
        if held.complete:
            body = json_body(head, "items", held.items, {})
            return HttpResponse(body, content_type="application/json")
        return StreamingHttpResponse(
            streamed_body(head, "items", held.all(), {}), content_type="application/json"
        )


def _similar_items(
    repository: ImageRepository, found: list[NearCopy]
) -> Generator[bytes, None, None]:
    """Each near-copy's document as `GET /images/{id}` prints it, plus its `distance`, in the
    order of `found` (nearest, then oldest): one read of each distance's images in `_id` order,
    so none is held longer than it is printed. An image deleted since is left out."""
    for within, nears in itertools.groupby(found, key=lambda near: near.distance):
        ids = [near.id for near in nears]
        query = ImageQuery(filter={"_id": {"$in": ids}}, limit=0)

        def weigh(document: dict[str, Any], within: int = within) -> tuple[bytes, int]:
            item = dumps({**to_api(document), "distance": within})
            return item, len(item)

        yield from printed(repository.find_weighed(query, len(ids), weigh))


class LeakListView(APIView):
    @extend_schema(
        summary="Near-copies whose split differs: pairs that leak across train, test...",
        description=(
            "Pairs of the caller's images within `distance` of each other whose `data.<field>` "
            "are both set and differ: `{a: {_id, file, value}, b: {...}, distance}`, `a` the "
            "older. Each pair is listed once. Paged like `GET /images/duplicates?distance=N`: "
            "a page ends after the image whose pairs reach `limit` (one image's pairs are "
            "never split), or after a bounded scan; go on until `next` is null."
        ),
        parameters=[LeakParameters],
        responses=LEAKS_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        page = validated(LeakParameters, request.query_params)
        field, within = page["field"], page.get("distance", DEFAULT_DISTANCE)
        found = leaks(
            repository_for(request),
            field,
            within,
            page.get("after") or None,
            page.get("limit", DEFAULT_PAGE),
        )
        return Response(found.as_json(field=field))
