"""What a read of the change feed asks for, and the bounds of its parameters."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A long poll holds a request (a greenlet under gevent, not a thread) at most this long.
MAX_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class FeedRequest:
    since: dict[str, str] | None  # a resume token; None: only the current cursor is wanted
    limit: int
    wait_seconds: float
