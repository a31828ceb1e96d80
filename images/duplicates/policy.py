"""`on_duplicate`: what an upload or an import does with bytes the owner already stores."""

from __future__ import annotations

import enum
from typing import Any

from images.core.errors import Conflict
from images.store.repository import ImageRepository

PARAMETER = "on_duplicate"


class OnDuplicate(enum.Enum):
    REJECT = "reject"
    SKIP = "skip"


def stored_copy(repository: ImageRepository, sha256: str, file: str) -> dict[str, Any] | None:
    """The document that storing these bytes at `file` would repeat: the oldest one in scope
    with the same bytes at another path. None when there is none, or when `file` already holds
    these bytes (storing them there again makes no new copy)."""
    at_target = repository.get_by_file(file)
    if at_target is not None and at_target.get("sha256") == sha256:
        return None
    return repository.oldest_with_sha256(sha256, exclude_file=file)


def rejection(existing: dict[str, Any]) -> Conflict:
    """The 409 of `on_duplicate=reject`: the error, and the `_id` and `file` already stored."""
    return Conflict(
        f"The same bytes are already stored as '{existing['file']}'",
        fields={"_id": str(existing["_id"]), "file": existing["file"]},
    )
