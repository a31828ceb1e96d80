"""A seeded, reproducible order of the matches: by a keyed hash (BLAKE2b) of each `_id`.

Only the `_id`s of the selection are held (a list of 24-character strings and their 8-byte
keys while sorting: roughly 150 bytes an image, 150 MB for a million); the documents are then
fetched `FETCH_BATCH` at a time in that order.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

Document = dict[str, Any]
FETCH_BATCH = 100


def order_key(seed: int) -> Callable[[str], bytes]:
    """The sort key of an `_id` for `seed`: its BLAKE2b digest keyed with the seed."""
    key = seed.to_bytes(16, "big", signed=True)

    def digest(image_id: str) -> bytes:
        return hashlib.blake2b(image_id.encode(), digest_size=8, key=key).digest()

    return digest


def shuffled(ids: Iterable[str], seed: int) -> list[str]:
    """`ids` in the order of `seed`: the same for the same ids and seed, whatever order they came in."""
    return sorted(ids, key=order_key(seed))


def documents_in_order(
    ids: Sequence[str], fetch: Callable[[list[str]], Iterable[Document]]
) -> Iterator[Document]:
    """The documents of `ids` in that order, fetched a batch at a time; gone ones left out."""
    batches = iter(ids)
    while batch := list(itertools.islice(batches, FETCH_BATCH)):
        by_id = {document["_id"]: document for document in fetch(batch)}
        yield from (by_id[image_id] for image_id in batch if image_id in by_id)
