"""JSON answers that carry a list of documents, holding at most DOCUMENT_BUFFER_SIZE of them.

An answer is one object: `head`'s keys, then `"<name>": [<items>]`, then `tail`'s keys (the
bytes orjson would print for the whole object). Items are printed one at a time as they are
read. A list whose printed items fit the budget is answered whole (`Held.complete`): its
`Content-Length` is known and the caller can count what it needs from what it holds. A larger
one is streamed: what is held, then the rest as it is read, joined into writes of about
OUTPUT_CHUNK (a large item is written on its own). An answer that read more than TRIM_ABOVE
bytes gives the freed heap back to the system once it ends (images.runtime.memory).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from images.api.renderers import dumps
from images.core.documents import to_api
from images.runtime.chunks import coalesce
from images.runtime.memory import TRIM_ABOVE, return_freed_memory

# Small items of a streamed list are joined into writes of about this size.
OUTPUT_CHUNK = 512 * 1024


def as_printed(document: dict[str, Any]) -> tuple[bytes, int]:
    """A document as the API prints it (`to_api`), as JSON, and its size: what a read of a list
    weighs its documents by (ImageRepository.find_weighed)."""
    item = dumps(to_api(document))
    return item, len(item)


def printed(weighed: Generator[tuple[bytes, int], None, None]) -> Generator[bytes, None, None]:
    """The printed items of a weighed read, without their sizes."""
    with contextlib.closing(weighed):
        for item, _size in weighed:
            yield item


@dataclass
class Held:
    """The first items of a list, up to a byte budget; `rest` yields those after them."""

    rest: Generator[bytes, None, None]
    items: collections.deque[bytes] = field(default_factory=collections.deque)
    size: int = 0
    complete: bool = False

    def all(self) -> Generator[bytes, None, None]:
        """The held items (each let go once taken), then the rest."""
        while self.items:
            yield self.items.popleft()
        yield from self.rest


def hold(items: Generator[bytes, None, None], budget: int) -> Held:
    """Take items until they add up to more than `budget` bytes or there are no more."""
    held = Held(rest=items)
    for item in items:
        held.items.append(item)
        held.size += len(item)
        if held.size > budget:
            return held
    held.complete = True
    return held


def json_body(head: dict[str, Any], name: str, items: Iterable[bytes], tail: dict) -> bytes:
    """The whole answer at once."""
    return b"".join(_pieces(head, name, items, tail))


def streamed_body(
    head: dict[str, Any], name: str, items: Generator[bytes, None, None], tail: dict
) -> Generator[bytes, None, None]:
    """The answer in writes of about OUTPUT_CHUNK; `items` is read as it is sent."""
    sent = 0
    try:
        for piece in coalesce(_pieces(head, name, items, tail), OUTPUT_CHUNK):
            sent += len(piece)
            yield piece
    finally:
        items.close()
        if sent > TRIM_ABOVE:
            return_freed_memory()


def _pieces(
    head: dict[str, Any], name: str, items: Iterable[bytes], tail: dict
) -> Generator[bytes, None, None]:
    yield dumps(head)[:-1] + (b"," if head else b"") + dumps(name) + b":["
    first = True
    for item in items:
        if not first:
            yield b","
        yield item
        first = False
    yield b"]" + (b"," + dumps(tail)[1:] if tail else b"}")
