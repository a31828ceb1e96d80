"""Query parameters → a validated MongoDB filter, sort, skip, limit and projection.

Every route that selects images (GET/PATCH/DELETE /images, /export, /fields/<field>) goes
through `image_query`, so the rules live in one place (images.api.filters reads the query
string into its arguments):

- `key=value` matches `data.key` (string equality; dotted keys reach nested paths);
  a repeated key matches any of its values; `regex=true` makes them case-insensitive partial
  matches with the user's text escaped.
- `filter={...}` is a MongoDB query document restricted to query operators.
- `ids`, `file`, `from`, `to` are the system filters; `sort`, `order`, `skip`, `limit`,
  `select` shape the result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from images.core.dates import parse_date
from images.core.errors import InvalidInput
from images.limits import bounded_json
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
# A bulk PATCH or DELETE's consent to act on every image when it selects none (`all=true`).
EVERY_IMAGE_PARAM = "all"

# The query string: each name's values, in the order given.
Params = Mapping[str, list[str]]

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


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


def image_query(
    data_params: Params,
    *,
    filter_text: str | None = None,
    ids: Sequence[str] = (),
    files: Sequence[str] = (),
    regex: bool = False,
    start: str = "",
    end: str = "",
    sort: str = "",
    order: int = 1,
    skip: int = 0,
    limit: int = DEFAULT_LIMIT,
    select: str = "",
) -> ImageQuery:
    """The query of the named parameters, each already of its type, and of the `key=value`
    data filters (`data_filters` picks them out of the query string)."""
    conditions = [
        condition
        for condition in (
            parse_filter(filter_text) if filter_text is not None else None,
            *_data_conditions(data_params, regex),
            _match("file", list(files), regex) if files else None,
            _id_condition(ids),
            _time_condition(start, end),
        )
        if condition
    ]
    if not conditions:
        query_filter: dict[str, Any] = {}
    elif len(conditions) == 1:
        query_filter = conditions[0]
    else:
        query_filter = {"$and": conditions}
    return ImageQuery(
        filter=query_filter,
        sort=_sort(sort.strip(), order),
        skip=skip,
        limit=limit,
        projection=_projection(select) if select else None,
        select=select or None,
    )


def data_filters(params: Params, ignored: Iterable[str] = ()) -> dict[str, list[str]]:
    """The free-form `key=value` parameters: every name that has no meaning of its own."""
    reserved = SYSTEM_PARAMS | TRANSPORT_PARAMS | frozenset(ignored)
    return {key: values for key, values in params.items() if _bare(key) not in reserved}


def check_bulk_selection(params: Params) -> None:
    """What a bulk PATCH or DELETE may not be given: 400 rather than acting on every match.

    `skip` and `limit` (a window of the matches is not what a bulk change acts on: only 0,
    meaning all of them, is accepted), and any selecting parameter with an empty value (`from=`,
    `to=`, `ids=`, `file=`, `filter=`, `key=`): an empty search box must never mean "everything".
    No selecting parameter at all means every image only when the caller says `all=true`.
    """
    _check_every_image(params)
    for name in ("skip", "limit"):
        if any(value.strip() != "0" for value in params.get(name, [])):
            raise InvalidInput(
                f"Parameter '{name}' is not supported on bulk PATCH and DELETE, which act on "
                "every match: narrow the filter or name the images with 'ids'"
            )
    for key, values in params.items():
        name = _bare(key)
        if name in SHAPING_PARAMS or name in TRANSPORT_PARAMS:
            continue
        if any(value.strip() == "" for value in values):
            raise InvalidInput(
                f"Parameter '{key}' is empty: a bulk PATCH or DELETE needs a value for every "
                "filter it is given"
            )


def _check_every_image(params: Params) -> None:
    consent = params.get(EVERY_IMAGE_PARAM)
    if consent is not None and consent != ["true"]:
        raise InvalidInput(f"Parameter '{EVERY_IMAGE_PARAM}' takes only 'true', once")
    ignored = SHAPING_PARAMS | TRANSPORT_PARAMS | {EVERY_IMAGE_PARAM}
    if consent is None and all(_bare(key) in ignored for key in params):
        raise InvalidInput(
            "A bulk PATCH or DELETE without a filter would change every image: give a filter, "
            f"or {EVERY_IMAGE_PARAM}=true to mean every image"
        )


def _bare(key: str) -> str:
    """A parameter's name without the `[]` of PHP-style repeated names."""
    return key[:-2] if key.endswith("[]") else key


def _data_conditions(data_params: Params, regex: bool) -> Iterable[dict[str, Any]]:
    for key, values in data_params.items():
        yield _match(f"data.{_data_key(key)}", values, regex)


def _id_condition(ids: Sequence[str]) -> dict[str, Any] | None:
    """`ids`, each value one id or several separated by commas."""
    object_ids = [parse_object_id(i, "id") for raw in ids for i in raw.split(",") if i]
    return {"_id": {"$in": object_ids}} if object_ids else None


def _time_condition(start: str, end: str) -> dict[str, Any] | None:
    time_range = {}
    if start:
        time_range["$gte"] = parse_date(start, "from")
    if end:
        time_range["$lte"] = parse_date(end, "to")
    return {"time": time_range} if time_range else None


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


def _sort(sort_field: str, order: int) -> list[tuple[str, int]]:
    if not sort_field:
        return [("_id", order)]
    _field_name(sort_field)
    return [(sort_field, order)] if sort_field == "_id" else [(sort_field, order), ("_id", order)]


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
