"""`on_duplicate` for the entries of one import: an entry whose bytes the owner already stores
at another path, that an earlier entry of the same archive brought, or that another request is
storing at that moment, is not stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from images.duplicates.claims import STALE_SECONDS, claim_name, new_token
from images.duplicates.policy import OnDuplicate, stored_copy
from images.runtime.scratch import scratch_database
from images.store.repository import ImageRepository


class DuplicateReport(Protocol):
    """Where an import reports what it did not store (images.archives.importer.ImportResult)."""

    def skip(self, entry: str, reason: str) -> None: ...

    def duplicate(self, entry: str, copy: dict[str, Any]) -> None: ...


class ImportDuplicates:
    """The hashes stored so far by this import are kept on disk (SQLite), so memory does not
    grow with the archive."""

    def __init__(self, repository: ImageRepository, policy: OnDuplicate, path: Path) -> None:
        self.repository = repository
        self.policy = policy
        schema = "CREATE TABLE stored (sha256 TEXT PRIMARY KEY, key TEXT)"
        self.connection = scratch_database(path, schema)
        self.token = new_token()

    def close(self) -> None:
        """After the import's documents are written (or it failed): its claims are given back."""
        self.connection.close()
        self.repository.release_claims(self.token)

    def found(self, entry: str, sha256: str, key: str, report: DuplicateReport) -> bool:
        """Whether the entry repeats stored bytes; if so it is reported (and, under `reject`,
        listed as skipped too)."""
        copy = self._copy_of(sha256, key)
        if copy is None:
            return False
        report.duplicate(entry, copy)
        if self.policy is OnDuplicate.REJECT:
            where = f"as '{copy['file']}'" if copy["file"] else "by another request right now"
            report.skip(entry, f"the same bytes are already stored {where}")
        return True

    def remember(self, sha256: str, key: str) -> None:
        """An entry stored at `key`: a later entry with its bytes repeats it."""
        self.connection.execute("INSERT OR IGNORE INTO stored VALUES (?, ?)", (sha256, key))

    def _copy_of(self, sha256: str, key: str) -> dict[str, Any] | None:
        row = self.connection.execute(
            "SELECT key FROM stored WHERE sha256 = ?", (sha256,)
        ).fetchone()
        if row is not None:
            # Its document is not written yet: no `_id` to give.
            return None if row[0] == key else {"_id": None, "file": row[0]}
        name = claim_name(self.repository, sha256)
        if not self.repository.take_claim(name, self.token, STALE_SECONDS):
            return {"_id": None, "file": None}  # another request is storing these bytes
        existing = stored_copy(self.repository, sha256, key)
        if existing is None:
            return None
        return {"_id": str(existing["_id"]), "file": existing["file"]}
