"""Query parameters → a validated MongoDB filter, sort, skip, limit and projection.

Every route that selects images (GET/PATCH/DELETE /images, /export, /fields/<field>) goes
through `parse_query`, so the rules live in one place:

- `key=value` matches `data.key` (string equality; dotted keys reach nested paths);
  a repeated key matches any of its values; `regex=true` makes them case-insensitive partial
  matches with the user's text escaped.
- `filter={...}` is a MongoDB query document restricted to query operators.
- `ids`, `file`, `from`, `to` are the system filters; `sort`, `order`, `skip`, `limit`,
  `select` shape the result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from django.http import QueryDict

from images.core.dates import parse_date
from images.core.errors import InvalidInput
from images.limits import bounded_json
from images.limits.numbers import INT64_MAX
from images.limits.patterns import MAX_PATTERN_LENGTH, check_pattern

ALLOWED_OPERATORS = frozenset(
    [
        "$eq",
        "$ne",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$in",
        "$nin",
        "$exists",
        "$type",
        "$regex",
        "$options",
        "$and",
        "$or",
        "$nor",
        "$not",
        "$all",
        "$elemMatch",
        "$size",
    ]
)
LOGICAL_OPERATORS = frozenset({"$and", "$or", "$nor"})
MAX_FILTER_DEPTH = bounded_json.MAX_FILTER_DEPTH
MAX_FILTER_LENGTH = 64 * 1024
MAX_REGEX_LENGTH = MAX_PATTERN_LENGTH
MAX_KEY_LENGTH = 256
DEFAULT_LIMIT = 100

# Parameters with a meaning of their own; every other name is a `data` key.
SYSTEM_PARAMS = frozenset(
    {"filter", "ids", "from", "to", "sort", "order", "limit", "skip", "select", "regex", "file"}
)
# System parameters that shape the result rather than select images.
SHAPING_PARAMS = frozenset({"sort", "order", "limit", "skip", "select", "regex"})
# The parameters a signed link adds (images.api.auth.signing): they select nothing.
TRANSPORT_PARAMS = frozenset({"expires", "signature", "user"})

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "undefined", ""}
_ORDERS = {"1": 1, "asc": 1, "ascending": 1, "-1": -1, "desc": -1, "descending": -1}


@dataclass(frozen=True)
class ImageQuery:
    filter: dict[str, Any]
    sort: list[tuple[str, int]] = field(default_factory=lambda: [("_id", 1)])
    skip: int = 0
    limit: int = DEFAULT_LIMIT
    projection: dict[str, int] | None = None
    select: str | None = None


def parse_object_id(value: object, name: str = "id") -> ObjectId:
    if not isinstance(value, str) or not _OBJECT_ID.match(value):
        raise InvalidInput(f"Invalid {name} {value!r}: expected 24 hexadecimal characters")
    return ObjectId(value)


def parse_query(params: QueryDict, default_limit: int = DEFAULT_LIMIT) -> ImageQuery:
    conditions = [c for c in _conditions(params) if c]
    if not conditions:
        query_filter: dict[str, Any] = {}
    elif len(conditions) == 1:
        query_filter = conditions[0]
    else:
        query_filter = {"$and": conditions}
    select = params.get("select") or None
    return ImageQuery(
        filter=query_filter,
        sort=_sort(params),
        skip=_non_negative(params, "skip", 0),
        limit=_non_negative(params, "limit", default_limit),
        projection=_projection(select) if select else None,
        select=select,
    )


def check_bulk_selection(params: QueryDict) -> None:
    """What a bulk PATCH or DELETE may not be given: 400 rather than acting on every match.

    `skip` and `limit` (a window of the matches is not what a bulk change acts on: only 0,
    meaning all of them, is accepted), and any selecting parameter with an empty value (`from=`,
    `to=`, `ids=`, `file=`, `filter=`, `key=`): an empty search box must never mean "everything".
    """
    for name in ("skip", "limit"):
        if any(value.strip() != "0" for value in params.getlist(name)):
            raise InvalidInput(
                f"Parameter '{name}' is not supported on bulk PATCH and DELETE, which act on "
                "every match: narrow the filter or name the images with 'ids'"
            )
    for key in params:
        name = key[:-2] if key.endswith("[]") else key
        if name in SHAPING_PARAMS or name in TRANSPORT_PARAMS:
            continue
        if any(value.strip() == "" for value in params.getlist(key)):
            raise InvalidInput(
                f"Parameter '{key}' is empty: a bulk PATCH or DELETE needs a value for every "
                "filter it is given"
            )


def _conditions(params: QueryDict) -> Iterable[dict[str, Any]]:
    regex = _regex_flag(params.get("regex"))
    if "filter" in params:
        yield parse_filter(params.get("filter"))
    for key in params:
        name = key[:-2] if key.endswith("[]") else key
        if name in SYSTEM_PARAMS or name in TRANSPORT_PARAMS:
            continue
        yield _match(f"data.{_data_key(key)}", params.getlist(key), regex)
    files = params.getlist("file")
    if files:
        yield _match("file", files, regex)
    ids = [*params.getlist("ids"), *params.getlist("ids[]")]
    if ids:
        object_ids = [parse_object_id(i, "id") for raw in ids for i in raw.split(",") if i]
        yield {"_id": {"$in": object_ids}}
    time_range = {}
    if params.get("from"):
        time_range["$gte"] = parse_date(params.get("from"), "from")
    if params.get("to"):
        time_range["$lte"] = parse_date(params.get("to"), "to")
    if time_range:
        yield {"time": time_range}


def _regex_flag(raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(f"Parameter 'regex' must be true or false, got {raw!r}")


def _data_key(key: str) -> str:
    """A query parameter name as a path under `data`; operator syntax is refused, not run."""
    name = key[:-2] if key.endswith("[]") else key
    if len(name) > MAX_KEY_LENGTH:
        raise InvalidInput(f"Parameter name is longer than {MAX_KEY_LENGTH} characters")
    if "$" in name or "[" in name or "]" in name or "\x00" in name:
        raise InvalidInput(
            f"Parameter name {name!r} is not allowed: operators cannot be given in names; "
            "use the 'filter' parameter"
        )
    if any(part == "" for part in name.split(".")):
        raise InvalidInput(f"Parameter name {name!r} has an empty path component")
    return name


def _match(path: str, values: list[str], regex: bool) -> dict[str, Any]:
    if regex:
        # The operator form, not a BSON regex value: both mean the same to MongoDB, but the
        # test server (SecantusDB) misses matches of BSON regex values over an index.
        patterns = [{"$regex": re.escape(v), "$options": "i"} for v in values]
        if len(patterns) == 1:
            return {path: patterns[0]}
        return {"$or": [{path: p} for p in patterns]}
    if len(values) == 1:
        return {path: values[0]}
    return {path: {"$in": values}}


def parse_filter(raw: str | None) -> dict[str, Any]:
    """The `filter` parameter: a JSON object using query operators only."""
    if raw is None or len(raw) > MAX_FILTER_LENGTH:
        raise InvalidInput(f"Malformed filter: at most {MAX_FILTER_LENGTH} characters of JSON")
    document = bounded_json.loads(raw, "The filter", MAX_FILTER_DEPTH)
    if not isinstance(document, dict):
        raise InvalidInput("Malformed filter: must be a JSON object")
    return _clean_document(document, depth=1)


def _clean_document(document: dict[str, Any], depth: int) -> dict[str, Any]:
    _check_depth(depth)
    cleaned: dict[str, Any] = {}
    for key, value in document.items():
        if key.startswith("$"):
            cleaned[key] = _clean_top_operator(key, value, depth)
        else:
            cleaned[_field_name(key)] = _clean_condition(key, value, depth + 1)
    return cleaned


def _clean_top_operator(operator: str, value: Any, depth: int) -> Any:
    if operator not in LOGICAL_OPERATORS:
        raise InvalidInput(f"Operator {operator} is not allowed at the top of a filter")
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise InvalidInput(f"{operator} takes a non-empty array of objects")
    return [_clean_document(v, depth + 1) for v in value]


def _field_name(key: str) -> str:
    if not key or "\x00" in key or any(part.startswith("$") for part in key.split(".")):
        raise InvalidInput(f"Invalid field name {key!r} in filter")
    return key


def _clean_condition(field_name: str, value: Any, depth: int) -> Any:
    """The condition on one field: a value to equal, or an object of operators."""
    _check_depth(depth)
    if isinstance(value, dict) and any(k.startswith("$") for k in value):
        operators = {
            op: _clean_operator(field_name, op, arg, depth + 1) for op, arg in value.items()
        }
        if "$regex" in operators:
            check_pattern(operators["$regex"], operators.get("$options", ""))
        return operators
    return _cast_value(field_name, value, depth)


def _clean_operator(field_name: str, operator: str, argument: Any, depth: int) -> Any:
    _check_depth(depth)
    if operator not in ALLOWED_OPERATORS:
        raise InvalidInput(f"Operator {operator} is not allowed in filter")
    if operator in LOGICAL_OPERATORS:
        raise InvalidInput(f"{operator} is only allowed at the top of a filter or a sub-document")
    if operator == "$regex":
        if not isinstance(argument, str) or len(argument) > MAX_REGEX_LENGTH:
            raise InvalidInput(f"$regex takes a string of at most {MAX_REGEX_LENGTH} characters")
        return argument
    if operator == "$options":
        if not isinstance(argument, str) or not set(argument) <= set("imsx"):
            raise InvalidInput("$options takes a string of the flags i, m, s, x")
        return argument
    if operator == "$not":
        if isinstance(argument, dict):
            return _clean_condition(field_name, argument, depth + 1)
        raise InvalidInput("$not takes an object of operators")
    if operator == "$elemMatch":
        if not isinstance(argument, dict):
            raise InvalidInput("$elemMatch takes an object")
        if any(k.startswith("$") for k in argument):
            return _clean_condition(field_name, argument, depth + 1)
        return _clean_document(argument, depth + 1)
    if operator in {"$in", "$nin", "$all"}:
        if not isinstance(argument, list):
            raise InvalidInput(f"{operator} takes an array")
        return [_cast_value(field_name, v, depth + 1) for v in argument]
    return _cast_value(field_name, argument, depth + 1)


def _cast_value(field_name: str, value: Any, depth: int) -> Any:
    """Values of `_id` and `time` are cast as the original's schema casts them."""
    _check_depth(depth)
    if isinstance(value, dict):
        for key in value:
            _field_name(key)
        return {k: _cast_value("", v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_cast_value("", v, depth + 1) for v in value]
    if field_name == "_id" and isinstance(value, str) and _OBJECT_ID.match(value):
        return ObjectId(value)
    if field_name == "time" and isinstance(value, str):
        return parse_date(value, "time")
    return value


def _check_depth(depth: int) -> None:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidInput(f"Filter is nested deeper than {MAX_FILTER_DEPTH} levels")


def _sort(params: QueryDict) -> list[tuple[str, int]]:
    raw_order = (params.get("order") or "1").strip().lower()
    if raw_order not in _ORDERS:
        raise InvalidInput(f"Parameter 'order' must be 1, -1, asc or desc, got {raw_order!r}")
    order = _ORDERS[raw_order]
    sort_field = (params.get("sort") or "").strip()
    if not sort_field:
        return [("_id", order)]
    _field_name(sort_field)
    return [(sort_field, order)] if sort_field == "_id" else [(sort_field, order), ("_id", order)]


def _non_negative(params: QueryDict, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidInput(f"Parameter '{name}' must be a non-negative integer") from None
    if value < 0:
        raise InvalidInput(f"Parameter '{name}' must be a non-negative integer")
    if value > INT64_MAX:
        raise InvalidInput(f"Parameter '{name}' must be at most {INT64_MAX} (64 bits)")
    return value


def _projection(select: str) -> dict[str, int]:
    projection: dict[str, int] = {}
    for token in re.split(r"[\s,]+", select.strip()):
        if not token:
            continue
        include = 0 if token.startswith("-") else 1
        name = _field_name(token.lstrip("+-"))
        projection[name] = include
    modes = {v for k, v in projection.items() if k != "_id"}
    if len(modes) > 1:
        raise InvalidInput("Parameter 'select' cannot mix included and excluded fields")
    return projection
