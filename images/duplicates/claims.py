"""A short claim on one owner's hash, held by an upload with `on_duplicate` from its duplicate
check until its document is written: a second upload of the same bytes waits for the first and
then finds its document.

Claims are documents in the `claims` collection (unique `_id`), so they hold across processes
and replicas. One left behind by a process that died is taken over once it is STALE_SECONDS old.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

from images.exceptions import ServiceUnavailable
from images.repository import ImageRepository

STALE_SECONDS = 120
WAIT_SECONDS = 30
POLL_SECONDS = 0.02


@contextlib.contextmanager
def claimed(repository: ImageRepository, sha256: str) -> Iterator[None]:
    name = f"sha256:{repository.owner or ''}:{sha256}"
    token = uuid.uuid4().hex
    deadline = time.monotonic() + WAIT_SECONDS
    while not repository.take_claim(name, token, STALE_SECONDS):
        if time.monotonic() > deadline:
            raise ServiceUnavailable("Another upload of the same bytes is still running; retry")
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        repository.release_claim(name, token)
