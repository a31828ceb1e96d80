"""Query parameters of `GET /images` (and PATCH, DELETE, `/export`) from Python values."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

# Python names for parameters that are keywords or read better with a suffix.
ALIASES = {"from_": "from", "since": "from", "until": "to"}
SYSTEM_PARAMETERS = frozenset(
    {"filter", "ids", "from", "to", "sort", "order", "skip", "limit", "select", "regex", "file"}
)

Params = list[tuple[str, str]]


def encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def build_params(query: Mapping[str, Any]) -> Params:
    """`filter` dicts become JSON, lists repeat their key, `from_` is `from`; None is dropped.

    Any other keyword is a `data` field matched by string equality (`label="cat"`).
    """
    params: Params = []
    for name, value in query.items():
        key = ALIASES.get(name, name)
        if value is None:
            continue
        if key == "filter" and not isinstance(value, str):
            params.append((key, json.dumps(value, separators=(",", ":"), default=str)))
        elif key == "ids" and not isinstance(value, str):
            params.extend((key, str(item)) for item in value)
        elif isinstance(value, list | tuple | set | frozenset):
            params.extend((key, encode_value(item)) for item in value)
        else:
            params.append((key, encode_value(value)))
    return params


def and_filter(params: Params, extra: dict[str, Any]) -> Params:
    """`params` with `extra` ANDed into their `filter`."""
    existing = [json.loads(value) for key, value in params if key == "filter"]
    clauses = [*existing, extra]
    combined = clauses[0] if len(clauses) == 1 else {"$and": clauses}
    rest = [(key, value) for key, value in params if key != "filter"]
    return [*rest, ("filter", json.dumps(combined, separators=(",", ":")))]


def parse_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """`key=value` (a string) and `key:=json` (a typed value), as the command line gives them."""
    result: dict[str, Any] = {}
    for pair in pairs:
        typed = ":=" in pair and pair.index(":=") + 1 == pair.index("=")
        if typed:
            key, raw = pair.split(":=", 1)
            try:
                value: Any = json.loads(raw)
            except ValueError:
                raise ValueError(f"{pair!r}: the value after ':=' is not JSON") from None
        elif "=" in pair:
            key, value = pair.split("=", 1)
        else:
            raise ValueError(f"{pair!r} is not key=value")
        if not key:
            raise ValueError(f"{pair!r} has no key")
        result[key] = value
    return result
