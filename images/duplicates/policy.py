"""`on_duplicate`: what an upload or an import does with a picture the owner already stores,
the same bytes or, with `similar`, a near-copy; and `check_leak`: a near-copy whose
`data.<field>` (a split) differs."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from images.core.errors import Conflict
from images.duplicates.near_copies import NearCopy, near_copies, nearest_copy
from images.store.repository import ImageRepository

PARAMETER = "on_duplicate"
SIMILAR = "similar"


class OnDuplicate(enum.Enum):
    REJECT = "reject"
    SKIP = "skip"


@dataclass(frozen=True)
class CopyChecks:
    """What a write checks against the pictures already stored."""

    on_duplicate: OnDuplicate | None = None
    # With `on_duplicate`: a picture within this perceptual distance counts as a copy too.
    similar: int | None = None
    # Refuse a picture with a near-copy (within `leak_distance`) whose `data.<field>` differs.
    leak_field: str | None = None
    leak_distance: int = 0


@dataclass(frozen=True)
class StoredCopy:
    document: dict[str, Any]
    distance: int | None = None  # None: the same bytes


def stored_copy(repository: ImageRepository, sha256: str, file: str) -> dict[str, Any] | None:
    """The document that storing these bytes at `file` would repeat: the oldest one in scope
    with the same bytes at another path. None when there is none, or when `file` already holds
    these bytes (storing them there again makes no new copy)."""
    if _already_at(repository, sha256, file):
        return None
    return repository.oldest_with_sha256(sha256, exclude_file=file)


def _already_at(repository: ImageRepository, sha256: str, file: str) -> bool:
    at_target = repository.get_by_file(file)
    return at_target is not None and at_target.get("sha256") == sha256


def copy_of(
    repository: ImageRepository, sha256: str, phash: str | None, file: str, similar: int | None
) -> StoredCopy | None:
    """The stored copy of the same bytes; failing that, with `similar`, the nearest stored
    picture within that distance at another path."""
    if _already_at(repository, sha256, file):
        return None
    exact = repository.oldest_with_sha256(sha256, exclude_file=file)
    if exact is not None:
        return StoredCopy(exact)
    if similar is None or phash is None:
        return None
    near = nearest_copy(repository, phash, similar, file)
    return None if near is None else StoredCopy(near.document, near.distance)


def rejection(existing: StoredCopy) -> Conflict:
    """The 409 of `on_duplicate=reject`: the error, and the `_id` and `file` already stored."""
    document = existing.document
    fields = {"_id": str(document["_id"]), "file": document["file"]}
    if existing.distance is None:
        return Conflict(f"The same bytes are already stored as '{document['file']}'", fields=fields)
    return Conflict(
        f"A near-copy is already stored as '{document['file']}' "
        f"(perceptual distance {existing.distance})",
        fields={**fields, "distance": existing.distance},
    )


def check_leak(
    repository: ImageRepository,
    phash: str | None,
    data: dict[str, Any],
    file: str,
    checks: CopyChecks,
) -> None:
    """409 when a near-copy of the picture has another `data.<field>` than `data` gives it."""
    field = checks.leak_field
    if field is None or phash is None:
        return
    value = data_value(data, field)
    if value is None:
        return
    leak = _leaking_copy(repository, phash, checks.leak_distance, file, field, value)
    if leak is None:
        return
    stored_value = data_value(leak.document.get("data"), field)
    raise Conflict(
        f"A near-copy is stored as '{leak.document['file']}' with {field} = {stored_value!r} "
        f"(perceptual distance {leak.distance}): storing this one with {field} = {value!r} "
        f"would put the same picture in both",
        fields={
            "_id": str(leak.id),
            "file": leak.document["file"],
            "distance": leak.distance,
            "field": field,
            "value": stored_value,
        },
    )


def _leaking_copy(
    repository: ImageRepository, phash: str, within: int, file: str, field: str, value: Any
) -> NearCopy | None:
    projection = {f"data.{field}": 1}
    for near in near_copies(repository, phash, within, projection=projection, exclude_file=file):
        stored_value = data_value(near.document.get("data"), field)
        if stored_value is not None and stored_value != value:
            return near
    return None


def data_value(data: Any, path: str) -> Any:
    """The value at a dotted path of `data`, or None."""
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
