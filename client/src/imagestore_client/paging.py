"""Walking every match of a query a page at a time: by `_id` when unsorted, else by skip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from imagestore_client.query import Params, and_filter

Document = dict[str, Any]


def every_match(
    get_page: Callable[[Params], list[Document]], params: Params, page_size: int
) -> Iterator[Document]:
    """The documents of `params`, `page_size` per request; their `limit`/`skip` bound the run.

    Without a sort each page continues after the last `_id` seen (`_id > last`), which stays
    cheap however deep the walk goes and misses nothing added behind it.
    """
    given = dict(params)
    limit = int(given.get("limit") or 0) or None
    skip = int(given.get("skip") or 0)
    keyset = not any(key in ("sort", "order", "skip") for key, _ in params)
    base = [(key, value) for key, value in params if key not in ("limit", "skip")]
    last_id: str | None = None
    while limit is None or limit > 0:
        size = page_size if limit is None else min(page_size, limit)
        page = [*base, ("limit", str(size))]
        if keyset:
            page += [("sort", "_id"), ("order", "1")]
            if last_id:
                page = and_filter(page, {"_id": {"$gt": last_id}})
        else:
            page.append(("skip", str(skip)))
        items = get_page(page)
        yield from items
        if len(items) < size:
            return
        skip += size
        last_id = items[-1]["_id"]
        if limit is not None:
            limit -= size
