"""Documents of an import, committed a batch at a time by a background thread.

The database works on one batch while the importer stages the files of the next; at most one
batch is in flight and one is being filled, so memory stays bounded. A batch goes through the
write path (`images.writes`): under the leases of its keys, the staged files are promoted and
the documents written in the order that never leaves a document without its bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pymongo.errors import BulkWriteError

from images.store.repository import DUPLICATE_KEY, ImageRepository
from images.writes import FileWriter, StagedFile

Conflict = Callable[[dict[str, Any], str], None]
Written = Callable[[set[str]], None]
Outcome = tuple[set[str], list[tuple[dict[str, Any], str]]]


class DocumentWriter:
    def __init__(
        self,
        repository: ImageRepository,
        writer: FileWriter,
        batch_size: int,
        on_conflict: Conflict,
        on_written: Written,
    ):
        self.repository = repository
        self.writer = writer
        self.batch_size = batch_size
        self.on_conflict = on_conflict
        self.on_written = on_written
        self.pending: dict[str, tuple[StagedFile, dict[str, Any]]] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-documents")
        self.in_flight: Future | None = None

    def add(self, staged: StagedFile, document: dict[str, Any]) -> None:
        self.pending[staged.key] = (staged, document)
        if len(self.pending) >= self.batch_size:
            self.send()

    def send(self) -> None:
        """Hand the pending documents over (after the previous batch is done)."""
        self._collect()
        if self.pending:
            self.in_flight = self.executor.submit(self._write, list(self.pending.values()))
            self.pending = {}

    def finish(self) -> None:
        try:
            self.send()
            self._collect()
        finally:
            self.executor.shutdown()

    def abandon(self) -> None:
        """After a failure elsewhere: let the batch in flight end, drop the pending one."""
        self.writer.discard([staged for staged, _ in self.pending.values()])
        self.pending = {}
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
        self.on_written(written)
        for document, reason in conflicts:
            self.on_conflict(document, reason)

    def _write(self, batch: list[tuple[StagedFile, dict[str, Any]]]) -> Outcome:
        documents = {staged.key: document for staged, document in batch}
        conflicts: list[tuple[dict[str, Any], str]] = []

        def write_documents(items: list[StagedFile], _new_keys: Collection[str]) -> set[str]:
            # Every document is inserted first anyway (see `_write_documents`).
            written, refused = self._write_documents([documents[item.key] for item in items])
            conflicts.extend(refused)
            return written

        written = self.writer.commit([staged for staged, _ in batch], write_documents)
        return written, conflicts

    def _write_documents(self, documents: list[dict[str, Any]]) -> Outcome:
        """New images are inserted; those whose path (or `_id`) is taken are then upserted."""
        taken = [documents[i] for i in self.repository.insert_new(documents)]
        taken_keys = {document["file"] for document in taken}
        written = {d["file"] for d in documents if d["file"] not in taken_keys}
        if not taken:
            return written, []
        try:
            self.repository.upsert_many(taken)
        except BulkWriteError as error:
            errors = (error.details or {}).get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            failed = {e["index"]: e for e in errors}
            written |= {d["file"] for i, d in enumerate(taken) if i not in failed}
            refused = [(taken[i], _conflict_reason(e, taken[i])) for i, e in failed.items()]
            return written, refused
        return written | taken_keys, []


def _conflict_reason(error: dict[str, Any], document: dict[str, Any]) -> str:
    if "_id" in (error.get("keyPattern") or {}):
        return f"_id {document.get('_id')} is already used by another file"
    return "another image was written at this path at the same time"
