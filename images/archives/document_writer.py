"""Documents of an import, written a batch at a time by a background thread.

The database works on one batch while the importer writes the files of the next; at most one
batch is in flight and one is being filled, so memory stays bounded. A batch is only handed
over once all its files are stored: documents never point at files not yet written.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pymongo.errors import BulkWriteError

from images.repository import DUPLICATE_KEY, ImageRepository

Conflict = Callable[[dict[str, Any], str], None]


class DocumentWriter:
    def __init__(self, repository: ImageRepository, batch_size: int, on_conflict: Conflict):
        self.repository = repository
        self.batch_size = batch_size
        self.on_conflict = on_conflict
        self.written = 0
        self.pending: list[dict[str, Any]] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-documents")
        self.in_flight: Future | None = None

    def add(self, document: dict[str, Any]) -> None:
        self.pending.append(document)
        if len(self.pending) >= self.batch_size:
            self.send()

    def send(self) -> None:
        """Hand the pending documents over (after the previous batch is done)."""
        self._collect()
        if self.pending:
            self.in_flight = self.executor.submit(self._write, self.pending)
            self.pending = []

    def finish(self) -> None:
        try:
            self.send()
            self._collect()
        finally:
            self.executor.shutdown()

    def abandon(self) -> None:
        """After a failure elsewhere: let the batch in flight end, drop the pending one."""
        self.pending = []
        try:
            if self.in_flight is not None:
                self.in_flight.exception()
        finally:
            self.executor.shutdown()

    def _collect(self) -> None:
        if self.in_flight is None:
            return
        future, self.in_flight = self.in_flight, None
        written, conflicts = future.result()
        self.written += written
        for document, reason in conflicts:
            self.on_conflict(document, reason)

    def _write(self, documents: list[dict[str, Any]]) -> tuple[int, list[tuple[dict, str]]]:
        """New images are inserted; those whose path (or `_id`) is taken are then upserted."""
        taken = [documents[i] for i in self.repository.insert_new(documents)]
        written = len(documents) - len(taken)
        if not taken:
            return written, []
        try:
            return written + self.repository.upsert_many(taken), []
        except BulkWriteError as error:
            details = error.details or {}
            errors = details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            written += details.get("nUpserted", 0) + details.get("nMatched", 0)
            failed = [(taken[e["index"]], e) for e in errors]
            return written, [(document, _conflict_reason(e, document)) for document, e in failed]


def _conflict_reason(error: dict[str, Any], document: dict[str, Any]) -> str:
    if "_id" in (error.get("keyPattern") or {}):
        return f"_id {document.get('_id')} is already used by another file"
    return "another image was written at this path at the same time"
