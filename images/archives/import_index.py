"""Scratch index of one import, on disk (SQLite), so memory does not grow with the archive.

It holds the documents read from `mongodb_data.json` and the storage keys of the entries
stored or skipped, so that each document is matched with its file by key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from images.runtime.scratch import scratch_database

_SCHEMA = """
CREATE TABLE documents (position INTEGER PRIMARY KEY, key TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX documents_key ON documents (key);
-- stored = 0: the entry was in the archive but skipped; 2: not stored, a duplicate.
CREATE TABLE entries (key TEXT PRIMARY KEY, stored INTEGER NOT NULL);
-- Keys whose document this import wrote (each counted once).
CREATE TABLE written (key TEXT PRIMARY KEY);
"""
# Of several manifest items for one file, the last one is its document.
_LAST_ITEM = "d.position = (SELECT MAX(position) FROM documents WHERE key = d.key)"


class ImportIndex:
    def __init__(self, path: Path) -> None:
        self.connection = scratch_database(path, _SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def add_document(self, position: int, key: str, record: dict[str, Any]) -> None:
        self.connection.execute(
            "INSERT INTO documents VALUES (?, ?, ?)", (position, key, orjson.dumps(record))
        )

    def add_entry(self, key: str, stored: bool) -> None:
        """An entry stored, or skipped (which never hides a stored entry of the same key)."""
        verb = "REPLACE" if stored else "IGNORE"
        self.connection.execute(f"INSERT OR {verb} INTO entries VALUES (?, ?)", (key, int(stored)))

    def mark_written(self, keys: set[str]) -> None:
        self.connection.executemany(
            "INSERT OR IGNORE INTO written VALUES (?)", [(k,) for k in keys]
        )

    def written_count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM written").fetchone()[0]

    def add_duplicate(self, key: str) -> None:
        """An entry not stored because its bytes already are: its manifest document is
        dropped without a report of its own (the entry's report says why)."""
        self.connection.execute("INSERT OR IGNORE INTO entries VALUES (?, 2)", (key,))

    def documents_for(self, keys: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """The manifest document of each of these keys (the last item for it)."""
        if not keys:
            return
        marks = ",".join("?" * len(keys))
        rows = self.connection.execute(
            f"SELECT key, record FROM documents d WHERE key IN ({marks}) AND {_LAST_ITEM}", keys
        )
        for key, record in rows.fetchall():
            yield key, orjson.loads(record)

    def documents_without_stored_file(self) -> Iterator[tuple[str, dict[str, Any], bool]]:
        """(key, record, in_archive) of manifest documents whose entry was not stored:
        skipped (in_archive) or absent from the archive."""
        rows = self.connection.execute(
            "SELECT d.key, d.record, e.key IS NOT NULL FROM documents d "
            f"LEFT JOIN entries e ON e.key = d.key WHERE NOT IFNULL(e.stored, 0) AND {_LAST_ITEM} "
            "ORDER BY d.position"
        )
        for key, record, in_archive in rows:  # `written` may change meanwhile, not `documents`
            yield key, orjson.loads(record), bool(in_archive)

    def superseded_documents(self) -> Iterator[str]:
        """Keys of manifest items that a later item for the same file replaces."""
        rows = self.connection.execute(
            f"SELECT d.key FROM documents d WHERE NOT ({_LAST_ITEM}) ORDER BY d.position"
        )
        for (key,) in rows:
            yield key
