"""SQLite files that hold one request's scratch state on disk (so memory does not grow with
an archive): no journal, no syncing, gone with their temporary folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def scratch_database(path: Path, schema: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    connection.executescript(schema)
    return connection
