"""`GET /images/duplicates`: groups of the caller's images that share their bytes."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.duplicate_parameters import DuplicatePageParameters
from images.api.openapi import DUPLICATES_RESPONSES
from images.api.parameters import validated
from images.api.scope import repository_for
from images.duplicates import duplicate_groups
from images.duplicates.groups import DEFAULT_LIMIT


class DuplicateListView(APIView):
    @extend_schema(
        summary="Groups of images with the same bytes (sha256), a page at a time",
        description=(
            "Each group is `{sha256, count, items: [{_id, file}]}` (items oldest first, at most "
            "1,000; `count` is the full number). Groups come in sha256 order; pass `next` as "
            "`after` for the following page (`next` is null on the last page)."
        ),
        parameters=[DuplicatePageParameters],
        responses=DUPLICATES_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        page = validated(DuplicatePageParameters(data=request.query_params))
        after, limit = page.get("after", ""), page.get("limit", DEFAULT_LIMIT)
        return Response(duplicate_groups(repository_for(request), after, limit).as_json())
