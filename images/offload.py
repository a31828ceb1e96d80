"""Blocking work (decoding, hashing, fsync) off gevent's loop.

Under `manage.py serve`'s gevent workers every request of a worker shares one OS thread: a
render in it (libvips or Pillow, a second or so for a huge picture) would stop every other
request of the worker, `/health/live` included, and so would an fsync waiting for the disk.
Such work goes to gevent's pool of native threads, where libvips, Pillow, hashlib and the
kernel run without the GIL while the loop serves the rest.
Without gevent (tests, gthread or sync workers) the work runs in the calling thread, and
`run_each_off_loop` on a pool of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
# Native threads of `run_each_off_loop` without gevent (gevent's pool has 10).
EACH_THREADS = 8


def run_off_loop(function: Callable[..., T], *arguments: object) -> T:
    if not _gevent_patched():
        return function(*arguments)
    from gevent import get_hub

    return get_hub().threadpool.apply(function, arguments)


def run_each_off_loop(function: Callable[[T], object], items: Collection[T]) -> None:
    """`function` on every item, several at once on native threads: blocking system calls
    such as fsync overlap (a journalling file system commits them together)."""
    if not _gevent_patched():
        with ThreadPoolExecutor(max_workers=max(1, min(EACH_THREADS, len(items)))) as pool:
            list(pool.map(function, items))
        return
    from gevent import get_hub

    for _ in get_hub().threadpool.imap_unordered(function, items):
        pass


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")
