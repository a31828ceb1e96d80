"""How much rendering a process does at once, and one render per thumbnail at a time.

A render holds decoded pixels, so a process runs at most THUMBNAIL_CONCURRENCY renders whose
estimated decoding memory (images.thumbnails.render.plan_decoding) adds up to at most
THUMBNAIL_MEMORY_MB; a render that alone would need more is refused (422). Requests for the same
thumbnail wait for the one rendering it and then find it stored. A request that cannot start
within THUMBNAIL_WAIT_SECONDS answers 503 with `Retry-After`. When the last render of a
large picture ends, the heap it freed is returned to the system (glibc's `malloc_trim`), so a
worker does not keep its high-water mark.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from django.conf import settings

from images.core.errors import Unavailable
from images.runtime.memory import MIB, TRIM_ABOVE, return_freed_memory
from images.thumbnails.render import NotAnImage


class RenderBusy(Unavailable):
    default_detail = "Too many thumbnails are being made: retry shortly"
    retry_after = 5


class RenderGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._room = threading.Condition()
        self._running = 0
        self._memory = 0

    @contextlib.contextmanager
    def key(self, key: str) -> Iterator[None]:
        """Hold `key` alone: other requests for it wait here until the holder is done."""
        deadline = time.monotonic() + settings.THUMBNAIL_WAIT_SECONDS
        with self._lock:
            lock, waiting = self._keys.setdefault(key, (threading.Lock(), [0]))
            waiting[0] += 1
        try:
            if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise RenderBusy()
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._lock:
                waiting[0] -= 1
                if not waiting[0]:
                    del self._keys[key]

    @contextlib.contextmanager
    def slot(self, memory: int = 0) -> Iterator[None]:
        """Room for one render needing `memory` bytes, once the renders running leave it."""
        budget = settings.THUMBNAIL_MEMORY_MB * MIB
        if memory > budget:
            raise NotAnImage(
                f"The image is too large to make a thumbnail of: decoding it needs about "
                f"{memory // MIB} MiB, over THUMBNAIL_MEMORY_MB ({settings.THUMBNAIL_MEMORY_MB})"
            )
        deadline = time.monotonic() + settings.THUMBNAIL_WAIT_SECONDS
        with self._room:
            while not self._fits(memory, budget):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RenderBusy()
                self._room.wait(remaining)
            self._running += 1
            self._memory += memory
        try:
            yield
        finally:
            with self._room:
                self._running -= 1
                self._memory -= memory
                idle = self._running == 0
                self._room.notify_all()
            if idle and memory > TRIM_ABOVE:
                return_freed_memory()

    def _fits(self, memory: int, budget: int) -> bool:
        return self._running < settings.THUMBNAIL_CONCURRENCY and self._memory + memory <= budget


GATE = RenderGate()
