"""Request body parsers: DRF's JSON parser behind the depth and size checks of
images.limits.bounded_json."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from images.core.errors import InvalidInput
from images.limits.bounded_json import MAX_BODY_DEPTH, check_text


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind the depth and size checks (request bodies)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        data = check_text(raw, "Request body", MAX_BODY_DEPTH, limit)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidInput(f"Request body is not valid JSON: {error}") from None
