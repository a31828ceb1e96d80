"""The size of a document's `data`, bounded on every write: upload, import, PATCH and PUT.

Sizes are BSON sizes, as MongoDB counts them. A PATCH cannot be measured after the merge
without reading every matched document, so the database checks it: the values it sets are
measured once, and the update only applies to documents whose `data` stays under the limit
with them added (`$bsonSize`, evaluated with the write, so concurrent PATCHes cannot pass
together). This bound is conservative: replacing a large value with another as large on a
document near the limit is refused; `$unset` it first or PUT the whole `data`.
"""

from __future__ import annotations

from typing import Any

import bson
from bson.errors import InvalidDocument
from django.conf import settings

from images.core.errors import InvalidInput, TooLarge


def bson_size(value: dict[str, Any]) -> int:
    try:
        return len(bson.encode(value))
    except (InvalidDocument, OverflowError) as error:
        raise InvalidInput(f"The data cannot be stored: {error}") from None


# MongoDB's own limit on a whole document, less room for `file`, `time` and the facts. It
# caps MAX_DATA_SIZE, so a document MongoDB would refuse is a 413 from here, whatever the
# server answers (the embedded server reports it as an internal error).
MONGODB_DOCUMENT_LIMIT = 16 * 1024 * 1024
DATA_CEILING = MONGODB_DOCUMENT_LIMIT - 64 * 1024


def data_limit() -> int:
    return min(settings.MAX_DATA_SIZE, DATA_CEILING)


def _too_large(what: str, size: int | None = None) -> TooLarge:
    limit = data_limit()
    measured = f" ({size} bytes)" if size is not None else ""
    name = "MAX_DATA_SIZE" if limit == settings.MAX_DATA_SIZE else "MongoDB's 16 MB per document"
    return TooLarge(
        f"{what}{measured} exceeds the limit of {limit} bytes of data per document ({name})"
    )


def check_data(data: dict[str, Any], what: str = "The document's data") -> None:
    """413 when `data` is larger than MAX_DATA_SIZE once stored."""
    size = bson_size({"data": data})
    if size > data_limit():
        raise _too_large(what, size)


def growth_conditions(update: dict[str, Any]) -> tuple[dict, dict] | None:
    """Filter conditions matching the documents an update keeps within MAX_DATA_SIZE, and
    those it would take over (None when it sets nothing); 413 when the values it sets are
    too large by themselves."""
    assignments = update.get("$set")
    if not assignments:
        return None
    added = bson_size(_nested(assignments))
    if added > data_limit():
        raise _too_large("The values set", added)
    current = {"$bsonSize": {"$ifNull": ["$data", {}]}}
    room = data_limit() - added
    return {"$expr": {"$lte": [current, room]}}, {"$expr": {"$gt": [current, room]}}


def _nested(assignments: dict[str, Any]) -> dict[str, Any]:
    """`{"data.a.b": v}` as the documents it creates, `{"data": {"a": {"b": v}}}`, so each level
    a dotted key creates is counted."""
    tree: dict[str, Any] = {}
    for path, value in assignments.items():
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            child = node.get(part)
            node = node.setdefault(part, {}) if not isinstance(child, dict) else child
        node[leaf] = value
    return tree


def refuse_growth(image_id: Any) -> TooLarge:
    return _too_large(f"The update would make image {image_id}'s data larger than allowed")
