"""`GET /fields` and `GET /fields/<field>`: what keys and values the data holds."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.filters import ImageQueryFilter
from images.api.openapi import FIELD_VALUES_RESPONSES, FIELDS_RESPONSES
from images.api.scope import repository_for
from images.core.errors import InvalidInput


class FieldListView(APIView):
    @extend_schema(
        summary="Top-level keys of `data` (of the newest FIELDS_SAMPLE_SIZE images in scope)",
        description=(
            "Query parameters are ignored, as the original does: clients send their list's "
            "query and build columns from the answer, which a filter matching nothing must "
            "not empty."
        ),
        operation_id="fields_list",
        responses=FIELDS_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        return Response(repository_for(request).field_names(settings.FIELDS_SAMPLE_SIZE))


class FieldValuesView(APIView):
    @extend_schema(
        summary="Distinct values of `data.<field>` (dotted paths allowed)",
        parameters=ImageQueryFilter.parameters,
        operation_id="field_values",
        responses=FIELD_VALUES_RESPONSES,
    )
    def get(self, request: Request, field: str) -> Response:
        parts = field.split(".")
        if any(not part or part.startswith("$") or "\x00" in part for part in parts):
            raise InvalidInput(f"Invalid field {field!r}")
        query = ImageQueryFilter().query(request.query_params)
        return Response(repository_for(request).distinct_values(field, query.filter))
