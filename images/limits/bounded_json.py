"""Untrusted JSON parsed with its depth and size bounded while it is read, never afterwards.

`DepthGauge` measures the nesting of a JSON text outside its strings in one possessive pass
at C speed, fed whole or block by block. In-memory texts (form fields, request bodies,
`filter`) are measured before a decoder builds anything. An archive's manifest is measured a
block at a time before ijson's item builder (which keeps a prefix per level, so its memory
grows with the square of the depth) is given the block; the bytes of the whole text, of an
item still open across blocks and of each built item are counted against their caps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import accumulate
from typing import IO, Any

import ijson
import orjson
from django.conf import settings

from images.core.errors import InvalidInput, TooLarge

# Containers of `data` below its top object; a PATCH body adds one level above it.
MAX_DATA_DEPTH = 32
MAX_FILTER_DEPTH = 16
MAX_BODY_DEPTH = MAX_DATA_DEPTH + 2

# Text up to the first string left open: runs of non-quotes and complete strings, taken
# possessively (no backtracking, one pass whatever the input).
_CLOSED_PART = re.compile(rb'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class DepthGauge:
    """The nesting depth of a JSON text fed in pieces, brackets inside strings excluded.

    Each piece is reduced at C speed: complete strings removed, everything but brackets
    dropped, the depth after each bracket summed up. A string still open at the end of a
    piece is carried over to the next one.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.peak = 0
        self.lowest = 0
        self.carry = b""

    def feed(self, piece: bytes) -> None:
        data = self.carry + piece if self.carry else piece
        match = _CLOSED_PART.match(data)
        assert match is not None  # the pattern matches the empty string too
        closed = match.end()
        self.carry = data[closed:]
        brackets = _STRING.sub(b"", data[:closed]).translate(None, _NOT_BRACKETS)
        self.lowest = self.depth
        if brackets:
            levels = list(accumulate(map(_DELTA.__getitem__, brackets), initial=self.depth))
            self.peak = max(self.peak, max(levels))
            self.lowest = min(levels)
            self.depth = levels[-1]


def nesting_exceeds(raw: bytes, max_depth: int) -> bool:
    """True when the JSON text nests arrays/objects deeper than `max_depth`."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    gauge = DepthGauge()
    gauge.feed(raw)
    return gauge.peak > max_depth


def check_text(raw: bytes | str, what: str, max_depth: int, max_bytes: int | None) -> bytes:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(f"{what} is larger than {max_bytes} bytes")
    if nesting_exceeds(data, max_depth):
        raise InvalidInput(f"{what} is nested deeper than {max_depth} levels")
    return data


def loads(raw: bytes | str, what: str, max_depth: int, max_bytes: int | None = None) -> Any:
    """A JSON text (form field, `filter`) decoded once its depth and size are known to fit."""
    data = check_text(raw, what, max_depth, max_bytes)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{what} is not valid JSON") from None


def array_items(
    stream: IO[bytes], what: str, max_depth: int, block: int = 64 * 1024
) -> Iterator[Any]:
    """The items of a JSON array read as a stream; 400 when it is not one or an item nests
    deeper than `max_depth`, 413 past MAX_MANIFEST_SIZE in all or MAX_MANIFEST_ITEM_SIZE for
    one item. Each block is measured before the parser sees it, so the parser (ijson's C
    builder, which keeps a prefix per level) never goes deeper than allowed."""
    reader = _ManifestReader(what, max_depth)
    items = ijson.sendable_list()
    parser = ijson.items_coro(items, "item", use_float=True)
    try:
        while chunk := stream.read(block):
            parser.send(reader.measure(chunk))
            yield from reader.checked(items)
        reader.finish()
        parser.close()
        yield from reader.checked(items)
    except ijson.JSONError as error:
        raise InvalidInput(f"{what} is not valid JSON") from error


class _ManifestReader:
    def __init__(self, what: str, max_depth: int) -> None:
        self.what = what
        self.max_depth = max_depth
        self.max_total = settings.MAX_MANIFEST_SIZE
        self.max_item = settings.MAX_MANIFEST_ITEM_SIZE
        self.gauge = DepthGauge()
        self.total = 0
        self.open_item = 0  # bytes of the item still open at the end of the last block
        self.position = 0
        self.started = False

    def measure(self, chunk: bytes) -> bytes:
        if self.total == 0:
            chunk = chunk.removeprefix(b"\xef\xbb\xbf")
        if not self.started:
            head = chunk.lstrip(b" \t\r\n")
            if head and not head.startswith(b"["):
                raise InvalidInput(f"{self.what} must be a JSON array of documents")
            self.started = bool(head)
        self.total += len(chunk)
        if self.total > self.max_total:
            raise TooLarge(f"{self.what} is larger than {self.max_total} bytes (MAX_MANIFEST_SIZE)")
        gauge = self.gauge
        gauge.feed(chunk)
        if gauge.peak > self.max_depth + 1:  # the array itself is one level
            raise InvalidInput(
                f"{self.what} has an item nested deeper than {self.max_depth} levels"
            )
        self.open_item = self.open_item + len(chunk) if gauge.lowest >= 2 else 0
        if max(self.open_item, len(gauge.carry)) > self.max_item:
            raise self.item_too_large(self.position)
        return chunk

    def checked(self, items: list) -> Iterator[Any]:
        for item in items:
            try:
                size = len(orjson.dumps(item))
            except orjson.JSONEncodeError:
                size = 0  # a number out of range: refused where the item is read
            if size > self.max_item:
                raise self.item_too_large(self.position)
            self.position += 1
            yield item
        del items[:]

    def finish(self) -> None:
        if not self.started:
            raise InvalidInput(f"{self.what} is empty")

    def item_too_large(self, position: int) -> TooLarge:
        return TooLarge(
            f"{self.what} item {position} is larger than {self.max_item} bytes "
            "(MAX_MANIFEST_ITEM_SIZE)"
        )
