"""Ordered concurrent prefetch: the building block of a training data loader."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Document = dict[str, Any]


def prefetch_samples(
    documents: Iterable[Document],
    fetch: Callable[[Document], bytes],
    prefetch: int,
    workers: int,
) -> Iterator[tuple[Document, bytes]]:
    """`(document, fetch(document))` in the order of `documents`, `prefetch` fetches ahead.

    At most `prefetch` files are held in memory; stopping early cancels what is queued.
    """
    if prefetch < 1 or workers < 1:
        raise ValueError("prefetch and workers must be at least 1")
    pending: deque[tuple[Document, Future[bytes]]] = deque()
    source = iter(documents)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagestore-fetch") as pool:
        try:
            for document in source:
                pending.append((document, pool.submit(fetch, document)))
                if len(pending) >= prefetch:
                    head, future = pending.popleft()
                    yield head, future.result()
            while pending:
                head, future = pending.popleft()
                yield head, future.result()
        finally:
            for _, future in pending:
                future.cancel()
