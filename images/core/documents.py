"""The image document: its system fields and how it is printed by the API."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from bson import Decimal128, ObjectId
from bson.regex import Regex

# Top-level fields the service owns; everything a user sends lives under `data`.
# `phashBands`: the perceptual hash's bands, kept for its index (images.duplicates.perceptual);
# never printed.
PHASH_BANDS = "phashBands"
FACT_FIELDS: tuple[str, ...] = ("size", "sha256", "width", "height", "format", "mode")
FACT_FIELDS += ("contentType", "phash", PHASH_BANDS)
# Set by `check_integrity --fix` on an image whose file is lost or holds other bytes:
# `{"status": "missing" | "mismatched", "checked": <date>, "foundSha256": <hash, if mismatched>}`.
# Removed when the right bytes are back (restored, or uploaded again to the same `file`).
INTEGRITY = "integrity"
SYSTEM_FIELDS = ("_id", "file", "time", "data", "userId", *FACT_FIELDS, INTEGRITY)


def format_time(value: dt.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, as the original prints dates."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    # The year by hand: strftime's %Y does not pad years before 1000 to four digits.
    return (
        f"{value.year:04d}"
        + value.strftime("-%m-%dT%H:%M:%S.")
        + f"{value.microsecond // 1000:03d}Z"
    )


def json_default(value: Any) -> Any:
    """Values BSON may hold that JSON has no type for."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, Decimal128):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Regex):
        return value.pattern
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _printed_time(value: Any) -> Any:
    return format_time(value) if isinstance(value, dt.datetime) else value


_PRINT_ORDER = ("_id", "file", "userId", "data", "time")


def to_api(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as the API prints it: `_id` as hex, `time` as ISO 8601.

    Keys come in the original's order (`_id`, `file`, `userId`, `data`, `time`), then facts
    and the integrity mark, if any.
    """
    printed: dict[str, Any] = {}
    ordered = [k for k in _PRINT_ORDER if k in document]
    ordered += [k for k in document if k not in _PRINT_ORDER and k != PHASH_BANDS]
    for key in ordered:
        value = document[key]
        if key == "_id":
            printed["_id"] = str(value)
        elif key == "time" and isinstance(value, dt.datetime):
            printed["time"] = format_time(value)
        elif key == INTEGRITY and isinstance(value, dict):
            printed[key] = {k: _printed_time(v) for k, v in value.items()}
        else:
            printed[key] = value
    return printed
