"""Integers the database is given (`skip`, `limit`, numbers in `data`) fit in 64 bits."""

from __future__ import annotations

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def fits_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX
