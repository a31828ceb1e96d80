"""The body of every error answer: `{"detail": "..."}`, with any further members after it.

Only orjson here: the HTTP server writes its own error answers with it
(images.runtime.serving.http_errors), outside Django and DRF."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

JSON = "application/json"


def error_body(detail: str, fields: Mapping[str, str] | None = None) -> bytes:
    return orjson.dumps({"detail": detail, **(fields or {})})
