"""Blocking work (decoding, decompressing, hashing, copying, fsync) off gevent's loop.

Under `manage.py serve`'s gevent workers every request of a worker shares one OS thread: work
that holds it stops every other request of the worker, `/health/live` included, and past the
master's heartbeat timeout (120 s) the worker is killed mid-request. A request must not hold the
loop for more than a few tens of milliseconds at a time, so each step of heavy work either

- runs on gevent's pool of native threads (`run_off_loop`, `run_each_off_loop`): a decode or a
  header (libvips, Pillow), the expansion, hash and inspection of archive entries, a big file
  copy, an fsync, a slice of spreadsheet rows. C code (libvips, Pillow, zlib, bz2, lzma,
  hashlib, file I/O) releases the GIL there; pure Python (openpyxl) shares it, and the loop
  still gets it back every `sys.getswitchinterval()` (5 ms). A copy or unlink of at most
  LOOP_BYTES stays where it is (`run_off_loop_if_large`): the round trip would cost more;
- or, for streaming work made of many small steps on the loop (request bodies read, export
  pieces, documents, manifest items), calls `cooperate()` at each step: once the greenlet has
  run `SLICE_SECONDS` since it last gave way, it waits for the loop's next iteration, where
  sockets (a probe, other requests) are served first.

What runs on a native thread must be self-contained: files, buffers and C libraries that only
the calling greenlet uses meanwhile (it waits for the result). Not the database (PyMongo's
sockets, pool and locks are cooperative under gevent and belong to the loop), not S3
(botocore's, likewise), nothing that waits for another greenlet (queues, events, the render
gate). After patching, the standard library's locks, the import locks included, are gevent's:
one taken uncontended (zipfile's, tempfile's here) costs nothing; one a native thread has to
wait for makes gevent run a hub in that thread, which works but is slow. `cooperate()` is for
the loop's greenlets only. Without gevent (tests, commands, gthread or sync workers) the work
runs in the calling thread and `cooperate()` does nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
A = TypeVar("A")

# Copying or freeing this many bytes takes a millisecond or so: it stays on the loop, where a
# round trip to a native thread (0.1-0.3 ms) would cost more than it saves.
LOOP_BYTES = 1024 * 1024
# The longest a greenlet calling `cooperate()` runs before the loop serves the others.
SLICE_SECONDS = 0.01
# A timer (unlike `gevent.sleep(0)`, which may run this greenlet again ahead of the loop's
# sockets, for many slices in a row) resumes the greenlet once the loop has polled them.
_GIVE_WAY_SECONDS = 0.0001
_slice_started = 0.0


def run_off_loop(function: Callable[..., T], *arguments: object) -> T:
    if not _gevent_patched():
        return function(*arguments)
    from gevent import get_hub

    return get_hub().threadpool.apply(function, arguments)


def run_off_loop_if_large(size: int | None, function: Callable[..., T], *arguments: object) -> T:
    """`run_off_loop`, unless the work is a copy (or unlink) of at most LOOP_BYTES (`size`;
    None: unknown), which runs where it is called. Only for work whose time grows with its
    bytes alone: a parser (Pillow, libvips) may take seconds over a small crafted file."""
    if size is not None and size <= LOOP_BYTES:
        return function(*arguments)
    return run_off_loop(function, *arguments)


def run_each_off_loop(function: Callable[[A], object], items: list[A]) -> None:
    """`function(item)` for every item, all at once on the pool's threads (at most its size
    at a time) under gevent, one after the other without it; the first error is raised."""
    if not _gevent_patched():
        for item in items:
            function(item)
        return
    if len(items) == 1:  # one fsync of a 100 MB file is the longest wait of all
        run_off_loop(function, items[0])
        return
    from gevent import get_hub

    pool = get_hub().threadpool
    for pending in [pool.spawn(function, item) for item in items]:
        pending.get()


def cooperate() -> None:
    """Under gevent, give the loop a turn when the calling greenlet has run a whole slice (any
    greenlet's turn starts the next slice); otherwise nothing. Cheap enough for every chunk."""
    global _slice_started
    now = time.monotonic()
    if now - _slice_started < SLICE_SECONDS or not _gevent_patched():
        return
    import gevent

    gevent.sleep(_GIVE_WAY_SECONDS)
    _slice_started = time.monotonic()


_patched = False


def _gevent_patched() -> bool:
    global _patched
    if _patched:
        return True
    monkey = sys.modules.get("gevent.monkey")
    _patched = monkey is not None and monkey.is_module_patched("threading")
    return _patched
