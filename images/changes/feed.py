"""A page of the feed: the changes after a cursor, at most `limit`, and the cursor after them.

A page also ends once its changes, as printed, pass DOCUMENT_BUFFER_SIZE (it always holds one):
changes carry whole documents, and 1,000 of 1 MiB would otherwise be held at once. `next` is
then the cursor after the last change the page holds, so nothing is skipped.

With `wait`, an empty page is held until a change arrives or the wait is over (a long poll).
Each wait on the database is one `getMore` of at most AWAIT_STEP_MS, so a request never holds
a connection longer than that at a time; under gevent workers PyMongo's socket waits are
cooperative, so a waiting request costs a greenlet, not the worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from images.api.renderers import dumps
from images.changes.cursor import encode_cursor
from images.changes.events import to_change
from images.changes.preimages import enable_preimages
from images.changes.request import FeedRequest
from images.changes.stream import NO_PREIMAGES, FeedUnsupported, open_stream
from images.store.repository import get_collection

AWAIT_STEP_MS = 1000
NO_WAIT_MS = 10  # `wait=0`: what is already in the history, without holding the request


@dataclass
class ChangePage:
    changes: list[bytes]  # each change printed as JSON
    next: str

    def rendered(self) -> bytes:
        """`{"changes": [...], "next": "..."}` as JSON."""
        return b'{"changes":[' + b",".join(self.changes) + b'],"next":' + dumps(self.next) + b"}"


def read_changes(owner: str | None, request: FeedRequest) -> ChangePage:
    collection = get_collection()
    preimages = enable_preimages(collection)
    await_ms = _await_step(request.wait_seconds)
    with open_stream(collection, owner, request.since, await_ms) as stream:
        if owner is not None and not preimages:
            raise FeedUnsupported(NO_PREIMAGES)
        changes = [] if request.since is None else _collect(stream, request)
        token = stream.resume_token  # servers since MongoDB 4.0.7 send it with every batch
        assert token is not None
        return ChangePage(changes, encode_cursor(token))


def _await_step(wait_seconds: float) -> int:
    if wait_seconds <= 0:
        return NO_WAIT_MS
    return max(NO_WAIT_MS, min(AWAIT_STEP_MS, int(wait_seconds * 1000)))


def _collect(stream, request: FeedRequest) -> list[bytes]:
    """Changes until `limit` or DOCUMENT_BUFFER_SIZE bytes of them, or the end of the history
    once one is found or the wait is over."""
    deadline = time.monotonic() + request.wait_seconds
    budget = settings.DOCUMENT_BUFFER_SIZE
    changes: list[bytes] = []
    held = 0
    while len(changes) < request.limit and held <= budget:
        event = stream.try_next()
        if event is None:
            if changes or time.monotonic() >= deadline:
                break
            continue
        change = to_change(event)
        if change is not None:
            changes.append(dumps(change))
            held += len(changes[-1])
    return changes
