"""The parameters of `GET /changes`: `since`, `limit` and `wait`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from images.api.errors import BadRequest
from images.changes.cursor import decode_cursor

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A long poll holds a request (a greenlet under gevent, not a thread) at most this long.
MAX_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class FeedRequest:
    since: dict[str, str] | None  # a resume token; None: only the current cursor is wanted
    limit: int
    wait_seconds: float


def parse_feed_request(params: Mapping[str, str]) -> FeedRequest:
    since = params.get("since") or None
    return FeedRequest(
        since=decode_cursor(since) if since is not None else None,
        limit=_number(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, int),
        wait_seconds=_number(params, "wait", 0.0, 0.0, MAX_WAIT_SECONDS, float),
    )


def _number(params, name: str, default, lowest, highest, kind):
    text = params.get(name)
    if text in (None, ""):
        return default
    try:
        value = kind(text)
    except ValueError as error:
        raise BadRequest(f"`{name}` must be a number from {lowest} to {highest}") from error
    if not lowest <= value <= highest:
        raise BadRequest(f"`{name}` must be a number from {lowest} to {highest}")
    return value
