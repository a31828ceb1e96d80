"""Before an ImageFolder export sends a byte: its label values and split values checked
against each other, so that no two values share a folder and no image is left out of a split
without a word. A problem is a 400 naming it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from images.archives.folder_names import SPLIT_NAMES, label_folder, label_text
from images.core.errors import InvalidInput
from images.core.query import ImageQuery
from images.store.repository import ImageRepository

SHOWN_CLASHES = 5


def check_folders(
    repository: ImageRepository, query: ImageQuery, by: str, split: str | None
) -> None:
    """400 when two values of `data.<by>` would share a folder, or `data.<split>` is missing
    or not a split name for some of the selected images."""
    fields = {"label": f"$data.{by}", **({"split": f"$data.{split}"} if split else {})}
    stages = [{"$group": {"_id": fields, "count": {"$sum": 1}}}]
    groups = [(row["_id"], row["count"]) for row in repository.aggregate_selection(query, stages)]
    _check_clashes((group.get("label") for group, _ in groups), f"data.{by}")
    if split:
        _check_splits([(group.get("split"), count) for group, count in groups], f"data.{split}")


def _check_clashes(values: Iterable[Any], field: str) -> None:
    """Values of different types or case written to one folder (`3` and `"3"`, `Cat` and
    `cat`, which case-insensitive file systems merge)."""
    seen: dict[str, Any] = {}
    clashes: list[str] = []
    for value in values:
        folder = label_folder(value).casefold()
        other = seen.setdefault(folder, value)
        if _typed(other) != _typed(value) and label_text(value) is not None:
            clashes.append(" and ".join(sorted([_shown(other), _shown(value)])))
    if clashes:
        listed = "; ".join(sorted(clashes)[:SHOWN_CLASHES])
        raise InvalidInput(
            f"Values of {field} would share a folder: {listed}. Make each label one value "
            "(same type and case), or export them apart with a filter"
        )


def _check_splits(counts: list[tuple[Any, int]], field: str) -> None:
    missing = sum(count for value, count in counts if label_text(value) is None)
    if missing:
        raise InvalidInput(
            f"{missing} selected images have no {field}: give them one, or leave them out "
            f'with filter={{"{field}": {{"$exists": true}}}}'
        )
    unknown = sorted({_shown(value) for value, _ in counts if value not in SPLIT_NAMES})
    if unknown:
        raise InvalidInput(
            f"{field} must be a split name ({', '.join(SPLIT_NAMES)}), got {', '.join(unknown)}"
        )


def _typed(value: Any) -> tuple[str, Any]:
    return type(value).__name__, repr(value)


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(label_text(value))
