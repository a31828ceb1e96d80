"""`GET /changes`: the change feed of the caller's images (images.changes)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.openapi import CHANGES_PARAMETERS, CHANGES_RESPONSES
from images.api.scope import request_owner
from images.changes import parse_feed_request, read_changes


class ChangeFeedView(APIView):
    @extend_schema(
        summary="Changes to the images after a cursor, in order (a change feed)",
        description=(
            "`{changes: [{op, _id, file, time, ...}], next}`: inserts and updates carry the "
            "image as it is now, deletes its `_id`, `file` and `time` as they were. Pass `next` "
            "as `since` to go on. Without `since`: no changes, only the current cursor. "
            "`wait=S` holds an empty answer up to S seconds until a change arrives. 410: the "
            "cursor fell out of the database's history, do a full resync. 501: MongoDB is not "
            "a replica set."
        ),
        parameters=CHANGES_PARAMETERS,
        responses=CHANGES_RESPONSES,
    )
    def get(self, request: Request) -> Response:
        feed_request = parse_feed_request(request.query_params)
        return Response(read_changes(request_owner(request), feed_request).as_json())
