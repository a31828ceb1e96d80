"""Long C work (decoding and scaling a picture) on a real thread when gevent serves.

A greenlet runs until it waits for I/O: a half-second libvips render would stop every other
connection of its worker meanwhile. gevent's thread pool runs it on an OS thread (libvips and
Pillow release the GIL) while the worker's loop goes on; without gevent it runs in place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")


def run_blocking(function: Callable[..., Result], *args) -> Result:
    if "gevent" not in sys.modules:
        return function(*args)
    import gevent
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        return function(*args)
    return gevent.get_hub().threadpool.apply(function, args)
