"""`GET /images/duplicates`: the owner's hashes stored more than once, a page at a time.

The hashes are read in `sha256` index order with nothing but the hash projected, counting runs
of equal values, so memory holds one hash whatever the collection's size; the documents of a
run longer than one are then read by hash. A page ends after `limit` groups; `next` is the
hash to pass as `after` for the following page.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from images.runtime.offload import cooperate
from images.store.repository import ImageRepository

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A group lists this many documents (oldest first); `count` is always the full number.
MAX_GROUP_ITEMS = 1000
MAX_AFTER_LENGTH = 128


@dataclass
class DuplicatePage:
    limit: int
    items: list[dict[str, Any]] = field(default_factory=list)
    next: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "items": self.items, "next": self.next}


def duplicate_groups(repository: ImageRepository, after: str, limit: int) -> DuplicatePage:
    page = DuplicatePage(limit=limit)
    runs = _repeated(repository.iter_sha256(after))
    with contextlib.closing(runs):
        found = list(itertools.islice(runs, limit))
    # Groups small enough to list whole are read in one query; larger ones one at a time.
    small = [sha256 for sha256, count in found if count <= MAX_GROUP_ITEMS]
    listed = repository.files_with_sha256_in(small)
    for sha256, count in found:
        items = listed.get(sha256) or repository.files_with_sha256(sha256, MAX_GROUP_ITEMS)
        page.items.append({"sha256": sha256, "count": count, "items": items})
    if len(found) == limit:
        page.next = found[-1][0]
    return page


def _repeated(
    hashes: Generator[str, None, None],
) -> Generator[tuple[str, int], None, None]:
    """(hash, count) for each run of equal hashes longer than one, from sorted hashes."""
    current, count = "", 0
    with contextlib.closing(hashes):
        for sha256 in hashes:
            cooperate()  # a batch of the cursor holds up to 16 MB of hashes
            if sha256 == current:
                count += 1
                continue
            if count > 1:
                yield current, count
            current, count = sha256, 1
        if count > 1:
            yield current, count
