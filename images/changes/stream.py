"""The change stream behind the feed: scoped, trimmed, and its failures in the API's terms."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pymongo.change_stream import CollectionChangeStream
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from images.changes.cursor import BadCursor
from images.core.errors import Gone, NotSupportedHere

IMAGE_OPERATIONS = ["insert", "update", "replace", "delete"]
# The collection itself went away or was renamed: no cursor of it can be followed any more.
END_OPERATIONS = ["drop", "rename", "dropDatabase", "invalidate"]

NOT_A_REPLICA_SET = {40573}  # "The $changeStream stage is only supported on replica sets"
# ChangeStreamHistoryLost, ChangeStreamFatalError (token not found), CappedPositionLost (the
# oplog was truncated past the stream while it read)
HISTORY_LOST = {286, 280, 136}
MALFORMED_TOKEN = {2, 9, 50811}  # BadValue, FailedToParse, KeyString format error


class HistoryLost(Gone):
    default_detail = (
        "The cursor is older than the database's history of changes (its oplog): do a full "
        "resync (list every image), then follow the feed from a new cursor (GET /changes)"
    )


class FeedUnsupported(NotSupportedHere):
    pass


STANDALONE = (
    "The change feed needs MongoDB running as a replica set (change streams); this one is a "
    "standalone server. A replica set of one member will do (docs/deployment.md)"
)
NO_PREIMAGES = (
    "The change feed under IMAGE_SCOPE=user needs MongoDB 6.0 or newer with pre-images on the "
    "images collection (collMod changeStreamPreAndPostImages, which needs the dbAdmin role)"
)


def pipeline(owner: str | None) -> list[dict[str, Any]]:
    """Image changes of `owner` (every owner's when None), plus the collection's end."""
    if owner is None:
        match: dict[str, Any] = {"operationType": {"$in": IMAGE_OPERATIONS + END_OPERATIONS}}
    else:
        owned = [{"fullDocument.userId": owner}, {"fullDocumentBeforeChange.userId": owner}]
        match = {
            "$or": [
                {"operationType": {"$in": END_OPERATIONS}},
                {"operationType": {"$in": IMAGE_OPERATIONS}, "$or": owned},
            ]
        }
    kept = ["operationType", "documentKey", "fullDocument", "wallTime"]
    trimmed = {name: 1 for name in kept}  # a pre-image is only read for what a delete reports
    trimmed |= {"fullDocumentBeforeChange.file": 1, "fullDocumentBeforeChange.time": 1}
    return [{"$match": match}, {"$project": trimmed}]


@contextlib.contextmanager
def open_stream(
    collection: Collection, owner: str | None, since: dict[str, str] | None, await_ms: int
) -> Iterator[CollectionChangeStream]:
    """The change stream after `since` (from now when None); errors raised while it is opened
    or read become the API's 400, 410 or 501."""
    with translated_errors(since is not None):
        stream = collection.watch(
            pipeline(owner),
            resume_after=since,
            full_document="updateLookup",
            full_document_before_change="whenAvailable",
            max_await_time_ms=await_ms,
        )
        with stream:
            yield stream


@contextlib.contextmanager
def translated_errors(resuming: bool) -> Iterator[None]:
    try:
        yield
    except OperationFailure as error:
        if error.code in NOT_A_REPLICA_SET:
            raise FeedUnsupported(STANDALONE) from error
        if resuming and error.code in HISTORY_LOST:
            raise HistoryLost() from error
        if resuming and error.code in MALFORMED_TOKEN:
            raise BadCursor() from error
        raise
