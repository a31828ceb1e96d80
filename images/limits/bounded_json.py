"""Untrusted JSON parsed with its depth and size bounded while it is read, never afterwards.

In-memory texts (form fields, request bodies, `filter`) are measured first: a count of the
brackets outside strings, made at C speed, refuses a text nested deeper than allowed before a
decoder builds anything. An archive's manifest is read as a stream of parser events (no
prefix per level, unlike ijson's item builders); each item is built only while its depth and
size stay under their caps, and the whole text is counted against its own cap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

import ijson
import orjson
from django.conf import settings
from rest_framework.parsers import JSONParser

from images.exceptions import BadRequest, PayloadTooLarge

# Containers of `data` below its top object; a PATCH body adds one level above it.
MAX_DATA_DEPTH = 32
MAX_FILTER_DEPTH = 16
MAX_BODY_DEPTH = MAX_DATA_DEPTH + 2

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def nesting_exceeds(raw: bytes, max_depth: int) -> bool:
    """True when the JSON text nests arrays/objects deeper than `max_depth`.

    Each pass removes the innermost pairs of brackets (strings taken out first), so the
    number of passes is the depth; it stops after `max_depth` of them.
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        brackets, removed = _INNERMOST_PAIR.subn(b"", brackets)
        if not brackets or not removed:
            return False  # within the limit, or unbalanced: the decoder will say so
    return bool(brackets)


def check_text(raw: bytes | str, what: str, max_depth: int, max_bytes: int | None) -> bytes:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"{what} is larger than {max_bytes} bytes")
    if nesting_exceeds(data, max_depth):
        raise BadRequest(f"{what} is nested deeper than {max_depth} levels")
    return data


def loads(raw: bytes | str, what: str, max_depth: int, max_bytes: int | None = None) -> Any:
    """A JSON text (form field, `filter`) decoded once its depth and size are known to fit."""
    data = check_text(raw, what, max_depth, max_bytes)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{what} is not valid JSON") from None


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser behind the depth and size checks (request bodies)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        data = check_text(raw, "Request body", MAX_BODY_DEPTH, limit)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadRequest(f"Request body is not valid JSON: {error}") from None


class _ItemBuilder:
    """Builds the items of a top-level array from parser events, within the caps."""

    def __init__(self, what: str, max_depth: int, max_item_bytes: int) -> None:
        self.what = what
        self.max_depth = max_depth
        self.max_item_bytes = max_item_bytes
        self.depth = 0
        self.position = 0
        self.item_bytes = 0
        self.builder: ijson.ObjectBuilder | None = None
        self.ready: list[Any] = []

    def event(self, name: str, value: Any) -> None:
        if self.depth == 0:
            if name != "start_array":
                raise BadRequest(f"{self.what} must be a JSON array of documents")
            self.depth = 1
            return
        if self.depth == 1 and name == "end_array":
            self.depth = 0
            return
        if self.builder is None:
            self.builder = ijson.ObjectBuilder()
            self.item_bytes = 0
        self._count(name, value)
        self.builder.event(name, value)
        if name in ("start_map", "start_array"):
            self.depth += 1
            if self.depth - 1 > self.max_depth:
                raise BadRequest(
                    f"{self.what} item {self.position} is nested deeper than "
                    f"{self.max_depth} levels"
                )
        elif name in ("end_map", "end_array"):
            self.depth -= 1
        if self.depth == 1:
            self.ready.append(self.builder.value)
            self.builder = None
            self.position += 1

    def _count(self, name: str, value: Any) -> None:
        self.item_bytes += len(value) + 8 if isinstance(value, str) else 16
        if self.item_bytes > self.max_item_bytes:
            raise PayloadTooLarge(
                f"{self.what} item {self.position} is larger than {self.max_item_bytes} bytes "
                "(MAX_MANIFEST_ITEM_SIZE)"
            )


def array_items(
    stream: IO[bytes], what: str, max_depth: int, block: int = 64 * 1024
) -> Iterator[Any]:
    """The items of a JSON array read as a stream; 400 when it is not one or nests too deep,
    413 past MAX_MANIFEST_SIZE bytes in all or MAX_MANIFEST_ITEM_SIZE for one item."""
    max_total = settings.MAX_MANIFEST_SIZE
    items = _ItemBuilder(what, max_depth, settings.MAX_MANIFEST_ITEM_SIZE)
    events = ijson.sendable_list()
    parser = ijson.basic_parse_coro(events, use_float=True)
    total = 0
    try:
        while chunk := stream.read(block):
            total += len(chunk)
            if total > max_total:
                raise PayloadTooLarge(
                    f"{what} is larger than {max_total} bytes (MAX_MANIFEST_SIZE)"
                )
            if total == len(chunk):
                chunk = chunk.removeprefix(b"\xef\xbb\xbf")
            parser.send(chunk)
            yield from _drain(events, items)
        if total == 0:
            raise BadRequest(f"{what} is empty")
        parser.close()
        yield from _drain(events, items)
    except ijson.JSONError as error:
        raise BadRequest(f"{what} is not valid JSON") from error


def _drain(events: list, items: _ItemBuilder) -> Iterator[Any]:
    for name, value in events:
        items.event(name, value)
    del events[:]
    ready, items.ready = items.ready, []
    yield from ready
