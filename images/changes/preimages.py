"""Pre-images of the `images` collection: a deleted document's owner and path, for the feed.

A delete event carries only the deleted `_id`; the document is gone. With the collection's
`changeStreamPreAndPostImages` on (MongoDB 6.0 and newer), MongoDB keeps each changed
document's previous version for as long as its oplog entry, so a delete can be matched on the
owner it had and report the path it had: atomically with the delete, on every write path
(single and bulk deletes, imports, integrity fixes) and with no store of our own to expire.
It is turned on by the first use of the feed in each process (`collMod`, which needs the
dbAdmin role); a cursor is only ever handed out after that, so no delete after a cursor lacks
its pre-image.
"""

from __future__ import annotations

import logging

from pymongo.collection import Collection
from pymongo.errors import OperationFailure

logger = logging.getLogger(__name__)

_enabled_for: set[str] = set()


def enable_preimages(collection: Collection) -> bool:
    """Turn pre-images on for `collection` (once per process); whether they are on."""
    name = collection.full_name
    if name in _enabled_for:
        return True
    try:
        collection.database.command(
            "collMod", collection.name, changeStreamPreAndPostImages={"enabled": True}
        )
    except OperationFailure as error:
        logger.warning("Pre-images of %s could not be turned on: %s", name, error)
        return False
    _enabled_for.add(name)
    return True
