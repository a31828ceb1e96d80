"""JSON rendering with orjson: several times faster than the standard encoder on large lists."""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.renderers import BaseRenderer

from images.core.documents import json_default


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=json_default, option=orjson.OPT_NON_STR_KEYS)


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        if data is None:
            return b""
        return dumps(data)
