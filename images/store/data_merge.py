"""A re-upload's `data` merged over the stored `data` (`POST /images?metadata=merge`).

The merge is shallow: each top-level key of the upload replaces the stored key of that name,
whole (a nested object is not merged into the stored one); stored keys the upload lacks are
kept. It is evaluated by the database in the document's own write (an update pipeline), so a
PATCH landing between a client's read and its upload is never lost.
"""

from __future__ import annotations

from typing import Any

from images.limits.documents import data_limit

# The stored `data` when it is an object; anything else (missing, null) counts as empty.
STORED_DATA = {"$cond": [{"$eq": [{"$type": "$data"}, "object"]}, "$data", {}]}


def merged_data(data: dict[str, Any]) -> dict[str, Any]:
    """The expression of the stored `data` with `data` merged over it."""
    return {"$mergeObjects": [STORED_DATA, {"$literal": data}]}


def merge_pipeline(changes: dict[str, Any], stale: list[str]) -> list[dict[str, Any]]:
    """The update setting `changes` (its `data` merged) and removing the `stale` fields."""
    assignments = {name: {"$literal": value} for name, value in changes.items()}
    assignments["data"] = merged_data(changes["data"])
    return [{"$set": assignments}, {"$unset": stale}] if stale else [{"$set": assignments}]


def room_for(data: dict[str, Any]) -> dict[str, Any]:
    """The filter condition of documents whose merged `data` stays within MAX_DATA_SIZE."""
    merged_size = {"$bsonSize": {"data": merged_data(data)}}
    return {"$expr": {"$lte": [merged_size, data_limit()]}}


def merged_document(
    before: dict[str, Any], changes: dict[str, Any], stale: list[str]
) -> dict[str, Any]:
    """The document `merge_pipeline` made of `before` (the image the write matched)."""
    stored = before.get("data")
    kept = {name: value for name, value in before.items() if name not in stale}
    data = {**(stored if isinstance(stored, dict) else {}), **changes["data"]}
    return {**kept, **changes, "data": data}
