"""`GET /changes`: the change feed of the caller's images (images.changes)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from images.api.change_parameters import ChangeFeedParameters, feed_request
from images.api.openapi import CHANGES_OPERATION
from images.api.scope import request_owner
from images.changes.feed import read_changes


class ChangeFeedView(APIView):
    @extend_schema(parameters=[ChangeFeedParameters], **CHANGES_OPERATION)
    def get(self, request: Request) -> HttpResponse:
        wanted = feed_request(request.query_params)
        page = read_changes(request_owner(request), wanted)
        return HttpResponse(page.rendered(), content_type="application/json")
