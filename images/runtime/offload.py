"""Blocking work (decoding, hashing, fsync) off gevent's loop.

Under `manage.py serve`'s gevent workers every request of a worker shares one OS thread: a
render in it (libvips or Pillow, a second or so for a huge picture) would stop every other
request of the worker, `/health/live` included, and so would an fsync waiting for the disk.
Such work goes to gevent's pool of native threads, where libvips, Pillow, hashlib and the
kernel run without the GIL while the loop serves the rest.
Without gevent (tests, gthread or sync workers) the work runs in the calling thread.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
A = TypeVar("A")


def run_off_loop(function: Callable[..., T], *arguments: object) -> T:
    if not _gevent_patched():
        return function(*arguments)
    from gevent import get_hub

    return get_hub().threadpool.apply(function, arguments)


def run_each_off_loop(function: Callable[[A], object], items: list[A]) -> None:
    """`function(item)` for every item, all at once on the pool's threads (at most its size
    at a time) under gevent, one after the other without it; the first error is raised."""
    if not _gevent_patched() or len(items) < 2:
        for item in items:
            function(item)
        return
    from gevent import get_hub

    pool = get_hub().threadpool
    for pending in [pool.spawn(function, item) for item in items]:
        pending.get()


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")
