"""JSON bodies of PATCH and PUT → MongoDB update documents on `data`."""

from __future__ import annotations

from typing import Any

from images.core.errors import InvalidInput
from images.limits.documents import check_data
from images.writes.uploads import validate_data


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object")
    return body


def _data_path(key: str) -> str:
    parts = key.split(".")
    if any(not part or part.startswith("$") or "\x00" in part for part in parts):
        raise InvalidInput(
            f"Invalid key {key!r}: path components must be non-empty and may not start with '$'"
        )
    return f"data.{key}"


def build_patch(body: Any) -> dict[str, Any]:
    """Each key is `$set` under `data.` (dotted keys reach nested values); `$unset` removes."""
    body = require_object(body)
    update: dict[str, dict[str, Any]] = {}
    unset = body.get("$unset", {})
    if not isinstance(unset, dict):
        raise InvalidInput("'$unset' must be an object of keys to remove")
    if unset:
        update["$unset"] = {_data_path(key): "" for key in unset}
    assignments = {key: value for key, value in body.items() if key != "$unset"}
    for value in assignments.values():
        validate_data(value)
    if assignments:
        update["$set"] = {_data_path(key): value for key, value in assignments.items()}
    conflicts = set(update.get("$set", {})) & set(update.get("$unset", {}))
    if conflicts:
        raise InvalidInput(f"Cannot set and unset the same key: {sorted(conflicts)}")
    return update


def build_replace(body: Any) -> dict[str, Any]:
    """PUT: the body replaces `data` entirely."""
    data = require_object(body)
    validate_data(data)
    check_data(data)
    return {"$set": {"data": data}}
