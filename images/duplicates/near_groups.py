"""Pages of near-copies over all of an owner's pictures: groups (`GET /images/duplicates?
distance=N`) and split leaks (`GET /images/leaks?field=split`).

Pictures are read in `_id` order; each one (the anchor) is looked up against the pictures after
it (`images.duplicates.near_copies`), so every near pair is met once, at its older picture. A
page scans at most SCAN_PER_PAGE anchors, so it answers in bounded time and memory however
few pairs there are; `next` (the last anchor scanned) is null only when the scan is complete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from images.duplicates.near_copies import MAX_LIMIT, near_copies
from images.duplicates.policy import data_value
from images.runtime.offload import cooperate
from images.store.repository import ImageRepository

SCAN_PER_PAGE = 500
DEFAULT_PAGE = 100
_ANCHOR = {"_id": 1, "file": 1, "phash": 1}


@dataclass
class NearPage:
    limit: int
    distance: int
    items: list[dict[str, Any]] = field(default_factory=list)
    next: str | None = None

    def as_json(self, **extra: Any) -> dict[str, Any]:
        head = {"limit": self.limit, "distance": self.distance, **extra}
        return {**head, "items": self.items, "next": self.next}


def near_groups(
    repository: ImageRepository, within: int, after: ObjectId | None, limit: int
) -> NearPage:
    """Groups: an anchor (distance 0) and every later picture within `within` of it (the
    nearest MAX_LIMIT listed; `count` is the full number)."""
    page = NearPage(limit, within)

    def visit(anchor: dict[str, Any]) -> None:
        later = near_copies(repository, anchor["phash"], within, MAX_LIMIT, after=anchor["_id"])
        if later:
            members = [_item(anchor, 0)] + [_item(near.document, near.distance) for near in later]
            group = {"phash": anchor["phash"], "count": 1 + later.total, "items": members}
            page.items.append(group)

    page.next = _scan(repository, after, _ANCHOR, visit, lambda: len(page.items) >= limit)
    return page


def leaks(
    repository: ImageRepository, path: str, within: int, after: ObjectId | None, limit: int
) -> NearPage:
    """Pairs of near-copies whose `data.<path>` differ (both have it). A page ends after the
    anchor whose pairs reach `limit`: one picture's pairs are never split across pages (of one
    picture's later copies, the nearest MAX_LIMIT are compared)."""
    page = NearPage(limit, within)
    projection = {f"data.{path}": 1}

    def visit(anchor: dict[str, Any]) -> None:
        value = data_value(anchor.get("data"), path)
        if value is None:
            return
        for near in near_copies(
            repository,
            anchor["phash"],
            within,
            MAX_LIMIT,
            after=anchor["_id"],
            projection=projection,
        ):
            other = data_value(near.document.get("data"), path)
            if other is not None and other != value:
                page.items.append(
                    {
                        "a": {**_item(anchor), "value": value},
                        "b": {**_item(near.document), "value": other},
                        "distance": near.distance,
                    }
                )

    fields = {**_ANCHOR, **projection}
    page.next = _scan(repository, after, fields, visit, lambda: len(page.items) >= limit)
    return page


def _scan(
    repository: ImageRepository,
    after: ObjectId | None,
    projection: dict[str, Any],
    visit: Callable[[dict[str, Any]], None],
    full: Callable[[], bool],
) -> str | None:
    """Visit anchors after `after` until the page is full or SCAN_PER_PAGE were scanned; the
    `next` cursor, or None when no picture is left."""
    anchors = repository.iter_hashed(after, projection)
    with contextlib.closing(anchors):  # the database cursor, when a page stops early
        for scanned, anchor in enumerate(anchors, start=1):
            cooperate()
            visit(anchor)
            if full() or scanned >= SCAN_PER_PAGE:
                return str(anchor["_id"]) if next(anchors, None) is not None else None
    return None


def _item(document: dict[str, Any], distance: int | None = None) -> dict[str, Any]:
    item = {"_id": str(document["_id"]), "file": document.get("file")}
    return item if distance is None else {**item, "distance": distance}
