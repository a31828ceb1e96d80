"""`on_duplicate` for the entries of one import: an entry whose bytes the owner already stores
at another path, that an earlier entry of the same archive brought, or that another request is
storing at that moment, is not stored; with `similar`, nor is a near-copy of a stored picture or
of an earlier entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from images.duplicates.claims import STALE_SECONDS, claim_name, new_token
from images.duplicates.near_copies import nearest_copy
from images.duplicates.perceptual import band_keys, bands, distance
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

    def __init__(
        self,
        repository: ImageRepository,
        policy: OnDuplicate,
        path: Path,
        similar: int | None = None,
    ) -> None:
        self.repository = repository
        self.policy = policy
        self.similar = similar
        schema = (
            "CREATE TABLE stored (sha256 TEXT PRIMARY KEY, key TEXT);"
            "CREATE TABLE band (value INTEGER, phash TEXT, key TEXT);"
            "CREATE INDEX band_value ON band (value)"
        )
        self.connection = scratch_database(path, schema)
        self.token = new_token()

    def close(self) -> None:
        """After the import's documents are written (or it failed): its claims are given back."""
        self.connection.close()
        self.repository.release_claims(self.token)

    def found(
        self, entry: str, sha256: str, phash: str | None, key: str, report: DuplicateReport
    ) -> bool:
        """Whether the entry repeats stored bytes (or, with `similar`, a stored picture); if so
        it is reported (and, under `reject`, listed as skipped too)."""
        copy = self._copy_of(sha256, key)
        if copy is None and self.similar is not None and phash is not None:
            copy = self._near_copy_of(phash, key)
        if copy is None:
            return False
        report.duplicate(entry, copy)
        if self.policy is OnDuplicate.REJECT:
            report.skip(entry, _reason(copy))
        return True

    def remember(self, sha256: str, phash: str | None, key: str) -> None:
        """An entry stored at `key`: a later entry with its bytes (or near it) repeats it."""
        self.connection.execute("INSERT OR IGNORE INTO stored VALUES (?, ?)", (sha256, key))
        if self.similar is not None and phash is not None:
            rows = [(value, phash, key) for value in bands(phash)]
            self.connection.executemany("INSERT INTO band VALUES (?, ?, ?)", rows)

    def _near_copy_of(self, phash: str, key: str) -> dict[str, Any] | None:
        """The nearest earlier entry of this archive, else the nearest stored picture."""
        assert self.similar is not None
        keys = band_keys(phash, self.similar)
        nearest: tuple[int, str] | None = None
        for start in range(0, len(keys), 500):  # SQLite's limit on bound values
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT DISTINCT phash, key FROM band WHERE value IN ({marks})"
            for other, other_key in self.connection.execute(query, chunk):
                found = distance(phash, other)
                if found <= self.similar and other_key != key:
                    nearest = min(nearest or (found, other_key), (found, other_key))
        if nearest is not None:
            return {"_id": None, "file": nearest[1], "distance": nearest[0]}
        near = nearest_copy(self.repository, phash, self.similar, key)
        if near is None:
            return None
        return {"_id": str(near.id), "file": near.document["file"], "distance": near.distance}

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


def _reason(copy: dict[str, Any]) -> str:
    if copy["file"] is None:
        return "the same bytes are already stored by another request right now"
    if "distance" in copy:
        return f"a near-copy is already stored as '{copy['file']}' (distance {copy['distance']})"
    return f"the same bytes are already stored as '{copy['file']}'"
