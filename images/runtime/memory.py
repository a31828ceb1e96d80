"""Giving freed heap back to the system after work that held a lot of it.

glibc keeps what a process freed for its next allocations, and with large blocks (a decoded
picture, a batch of large documents) it raises the size below which it serves them from the
heap instead of their own mappings: a worker then keeps its high-water mark long after the
request that made it. `return_freed_memory` (glibc's `malloc_trim`) hands the free pages back;
it runs after a large render (images.thumbnails.gate) and after a list or export that read more
than TRIM_ABOVE bytes of documents (images.api.document_lists, images.archives.streams).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

MIB = 1024 * 1024
# After work this large, freed heap goes back to the system.
TRIM_ABOVE = 32 * MIB


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def return_freed_memory() -> None:
    """glibc keeps freed pages of large blocks in the process; give them back (elsewhere:
    nothing to do)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
