"""The parameters of `GET /changes` (`since`, `limit`, `wait`) as a serializer that validates
them and is what `/docs/schema` publishes."""

from __future__ import annotations

from django.http import QueryDict
from rest_framework import serializers

from images.api.parameters import Parameters, ParameterText, validated
from images.changes.cursor import decode_cursor
from images.changes.request import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_SECONDS, FeedRequest


class ChangeFeedParameters(Parameters):
    since = ParameterText(
        help_text="A cursor (`next` of an earlier answer). Absent: only the current cursor."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_LIMIT,
        help_text=f"At most this many changes (1 to {MAX_LIMIT:,}, default {DEFAULT_LIMIT}).",
    )
    wait = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        help_text=f"Seconds (up to {MAX_WAIT_SECONDS:g}) to hold an empty answer until a change "
        "arrives (a long poll).",
    )


def feed_request(params: QueryDict) -> FeedRequest:
    """The feed request of a query string; 400 naming a bad parameter or cursor."""
    options = validated(ChangeFeedParameters, params)
    since = options.get("since") or None
    return FeedRequest(
        since=decode_cursor(since) if since is not None else None,
        limit=options.get("limit", DEFAULT_LIMIT),
        wait_seconds=options.get("wait", 0.0),
    )
