"""Near-copies: the caller's pictures whose perceptual hash is within a Hamming distance.

On a replica set the nearest are found in this process's memory (images.duplicates.hash_index)
and only their documents are read, in the caller's scope, their hashes compared again.
Otherwise (a standalone server, or while that index is being built) candidates come from the
`phashBands` index (every band value within its radius of the hash's own,
images.duplicates.perceptual.band_keys), never from a scan; their hashes are then compared
exactly. Candidates stream from the database and only the `limit` nearest are kept (a heap),
so a picture with a hundred thousand identical copies costs time, not memory.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from images.duplicates.hash_index import Matches, index_for
from images.duplicates.perceptual import band_keys, distance
from images.runtime.offload import cooperate
from images.store.repository import ImageRepository

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Larger is nearer: (-distance, -id, arrival, document); the heap's top is the one to drop.
Ranked = tuple[int, int, int, dict[str, Any]]


@dataclass(frozen=True)
class NearCopy:
    distance: int
    document: dict[str, Any]

    @property
    def id(self) -> ObjectId:
        return self.document["_id"]


class Found(list[NearCopy]):
    """The nearest copies, and how many there were in all (`total`, at least its length)."""

    total = 0


def near_copies(
    repository: ImageRepository,
    phash: str,
    within: int,
    limit: int = DEFAULT_LIMIT,
    *,
    after: ObjectId | None = None,
    projection: dict[str, Any] | None = None,
    exclude: ObjectId | None = None,
    exclude_file: str | None = None,
) -> Found:
    """The `limit` nearest pictures in scope within `within` of `phash`, nearest first, then
    oldest; only those with an `_id` greater than `after`, when given."""
    fields = {"_id": 1, "file": 1, "phash": 1, **(projection or {})}
    index = index_for(repository.collection)
    if index is not None:
        matches = index.nearest(
            phash,
            within,
            limit + (1 if exclude_file is not None else 0),
            owner=repository.owner,
            after=after,
            exclude=exclude,
        )
        if matches is not None:
            result = _read(repository, matches, phash, within, fields, exclude_file)
            del result[limit:]
            return result
    return _through_band_index(
        repository, phash, within, limit, fields, after, exclude, exclude_file
    )


def _through_band_index(
    repository: ImageRepository,
    phash: str,
    within: int,
    limit: int,
    fields: dict[str, Any],
    after: ObjectId | None,
    exclude: ObjectId | None,
    exclude_file: str | None,
) -> Found:
    candidates = repository.phash_candidates(band_keys(phash, within), fields, after)
    nearest: list[Ranked] = []
    total = 0
    for order, document in enumerate(candidates):
        cooperate()  # a batch of the cursor holds up to 16 MB of candidates
        found = distance(phash, document["phash"])
        if found > within or document["_id"] == exclude:
            continue
        if exclude_file is not None and document.get("file") == exclude_file:
            continue
        total += 1
        entry: Ranked = (-found, _negated(document["_id"]), order, document)
        if len(nearest) < limit:
            heapq.heappush(nearest, entry)
        elif entry > nearest[0]:
            heapq.heapreplace(nearest, entry)
    ranked = sorted(nearest, reverse=True)
    result = Found(NearCopy(-negative, document) for negative, _, _, document in ranked)
    result.total = total
    return result


def _read(
    repository: ImageRepository,
    matches: Matches,
    phash: str,
    within: int,
    fields: dict[str, Any],
    exclude_file: str | None,
) -> Found:
    """The documents of the matches, in their order, each still within `within` of `phash`."""
    documents = {
        document["_id"]: document
        for document in repository.with_ids([match.id for match in matches], fields)
    }
    result = Found()
    result.total = matches.total
    for match in matches:
        document = documents.get(match.id)
        if document is None or document.get("phash") is None:
            result.total -= 1  # deleted, or out of scope, since the index read it
            continue
        found = distance(phash, document["phash"])
        if found > within or (exclude_file is not None and document.get("file") == exclude_file):
            result.total -= 1
            continue
        result.append(NearCopy(found, document))
    result.sort(key=lambda near: (near.distance, near.id))
    return result


def _negated(image_id: ObjectId) -> int:
    """Larger for older ids: among equal distances the newest is the one to drop."""
    return -int(str(image_id), 16)


def nearest_copy(
    repository: ImageRepository, phash: str, within: int, file: str
) -> NearCopy | None:
    """The stored picture nearest to `phash` (the oldest among equals) at a path other than
    `file`, as a whole document; None when none is within `within`."""
    found = near_copies(repository, phash, within, limit=1, exclude_file=file)
    if not found:
        return None
    document = repository.get(found[0].id)
    return None if document is None else NearCopy(found[0].distance, document)
