"""One change stream event as one change of the feed."""

from __future__ import annotations

from typing import Any

from images.changes.stream import END_OPERATIONS, HistoryLost
from images.core.documents import format_time, to_api

_REPORTED_AS = {"insert": "insert", "update": "update", "replace": "update", "delete": "delete"}


def to_change(event: dict[str, Any]) -> dict[str, Any] | None:
    """`{op, _id, file, time, ...}`: the image as it is now for an insert or update, its `_id`,
    `file` and `time` as they were for a delete; `changedAt` is when the change was made.
    None for an update of an image deleted since (its delete follows in the feed)."""
    operation = event["operationType"]
    if operation in END_OPERATIONS:
        raise HistoryLost(
            "The images collection was dropped or renamed: do a full resync, then follow the "
            "feed from a new cursor (GET /changes)"
        )
    if operation == "delete":
        change = _deleted(event)
    elif event.get("fullDocument") is None:
        return None
    else:
        change = {"op": _REPORTED_AS[operation], **to_api(event["fullDocument"])}
    if event.get("wallTime") is not None:
        change["changedAt"] = format_time(event["wallTime"])
    return change


def _deleted(event: dict[str, Any]) -> dict[str, Any]:
    before = event.get("fullDocumentBeforeChange") or {}
    change = {"op": "delete", "_id": str(event["documentKey"]["_id"]), "file": before.get("file")}
    if before.get("time") is not None:
        change["time"] = format_time(before["time"])
    return change
