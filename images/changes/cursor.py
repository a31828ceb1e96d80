"""The feed's cursor: a change stream resume token as unpadded base64url text.

A resume token is `{"_data": "<hex>"}` (MongoDB 4.2 and newer); its bytes start with the
KeyString type of a timestamp (0x82). Clients must treat the text as opaque.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from images.core.errors import InvalidInput

_CURSOR = re.compile(r"^[A-Za-z0-9_-]{4,2048}$")
_TIMESTAMP_TYPE = 0x82


class BadCursor(InvalidInput):
    default_detail = "`since` is not a cursor of this feed: use a `next` it returned"


def encode_cursor(token: Mapping[str, Any]) -> str:
    raw = bytes.fromhex(token["_data"])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> dict[str, str]:
    """The resume token of `cursor`; BadCursor when it cannot be one."""
    if not _CURSOR.match(cursor):
        raise BadCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as error:
        raise BadCursor() from error
    if len(raw) < 9 or raw[0] != _TIMESTAMP_TYPE:
        raise BadCursor()
    return {"_data": raw.hex().upper()}
