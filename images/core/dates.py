"""Parsing of user-given dates (`from`, `to`, `time`)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings

from images.core.errors import InvalidInput


def parse_date(value: object, name: str) -> dt.datetime:
    """An ISO 8601 date or date-time; without an offset it is read in the TZ zone. UTC out."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f'Parameter "{name}" is not a valid date')
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f'Parameter "{name}" is not a valid date: {text!r}') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(settings.DATES_TIME_ZONE))
    # MongoDB stores milliseconds.
    parsed = parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(
            f'Parameter "{name}" is out of range: {text!r} is not between years 1 and 9999 in UTC'
        ) from None


def now() -> dt.datetime:
    current = dt.datetime.now(dt.UTC)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)
