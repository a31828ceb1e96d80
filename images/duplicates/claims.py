"""A claim on one owner's hash, held by a request with `on_duplicate` from its duplicate check
until its document is written: an upload of the same bytes meanwhile waits for it and then
finds its document. An import takes the claims of its entries without waiting (an entry whose
bytes another request is storing at that moment is reported, not stored) and gives them all
back when it ends.

Claims are documents in the `claims` collection (unique `_id`), so they hold across processes
and replicas. One left behind by a process that died is taken over once it is STALE_SECONDS old.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

from images.core.errors import Unavailable
from images.store.repository import ImageRepository

STALE_SECONDS = 120
WAIT_SECONDS = 30
POLL_SECONDS = 0.02


def claim_name(repository: ImageRepository, sha256: str) -> str:
    return f"sha256:{repository.owner or ''}:{sha256}"


def new_token() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def claimed(repository: ImageRepository, sha256: str) -> Iterator[None]:
    name = claim_name(repository, sha256)
    token = new_token()
    deadline = time.monotonic() + WAIT_SECONDS
    while not repository.take_claim(name, token, STALE_SECONDS):
        if time.monotonic() > deadline:
            raise Unavailable("Another upload of the same bytes is still running; retry")
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        repository.release_claims(token)
