"""Scratch index of one import, on disk (SQLite), so memory does not grow with the archive.

It holds the documents read from `mongodb_data.json` and the facts of every image entry
stored, and joins them by storage key when the documents are written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE documents (position INTEGER PRIMARY KEY, key TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX documents_key ON documents (key);
-- facts IS NULL: the entry was in the archive but not stored (skipped).
CREATE TABLE entries (key TEXT PRIMARY KEY, facts BLOB);
"""


class ImportIndex:
    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path)
        self.connection.execute("PRAGMA journal_mode = OFF")
        self.connection.execute("PRAGMA synchronous = OFF")
        self.connection.executescript(_SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def add_document(self, position: int, key: str, record: dict[str, Any]) -> None:
        self.connection.execute(
            "INSERT INTO documents VALUES (?, ?, ?)", (position, key, orjson.dumps(record))
        )

    def has_documents(self) -> bool:
        return self.connection.execute("SELECT 1 FROM documents LIMIT 1").fetchone() is not None

    def add_entry(self, key: str, facts: dict[str, Any] | None) -> None:
        stored = None if facts is None else orjson.dumps(facts)
        self.connection.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (key, stored))

    def stored_keys(self) -> Iterator[str]:
        rows = self.connection.execute("SELECT key FROM entries WHERE facts IS NOT NULL")
        for (key,) in rows:
            yield key

    def documents_with_facts(self) -> Iterator[tuple[str, dict[str, Any], str | None]]:
        """(key, record, state) in manifest order; state: 'stored', 'skipped' or None (absent)."""
        rows = self.connection.execute(
            "SELECT d.key, d.record, e.key IS NOT NULL, e.facts FROM documents d "
            "LEFT JOIN entries e ON e.key = d.key ORDER BY d.position"
        )
        for key, record, in_archive, facts in rows:
            document = orjson.loads(record)
            if facts is not None:
                document.update(orjson.loads(facts))
            state = ("stored" if facts is not None else "skipped") if in_archive else None
            yield key, document, state

    def entries_without_document(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Stored entries that no manifest document describes, with their facts."""
        rows = self.connection.execute(
            "SELECT key, facts FROM entries WHERE facts IS NOT NULL "
            "AND key NOT IN (SELECT key FROM documents) ORDER BY rowid"
        )
        for key, facts in rows:
            yield key, orjson.loads(facts)
