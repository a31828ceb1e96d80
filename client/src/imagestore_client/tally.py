"""What a push or pull did, counted safely from many threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RunSummary:
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    interrupted: bool = False
    seconds: float = 0.0


class Tally:
    """Adds to a summary's counters under a lock, advancing the progress bar once per file."""

    def __init__(self, summary: RunSummary, progress: Callable[[int], None]) -> None:
        self.summary = summary
        self.progress = progress
        self.lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self.summary, name, getattr(self.summary, name) + value)
        self.progress(1)

    def fail(self, name: str, reason: str) -> None:
        with self.lock:
            self.summary.failed.append((name, reason))
        self.progress(1)
