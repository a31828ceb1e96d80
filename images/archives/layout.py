"""What an archive is made of: its manifest names, and the progress protocol of both directions."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

MANIFEST_JSON = "mongodb_data.json"
MANIFEST_XLSX = "mongodb_data.xlsx"
MISSING_JSON = "missing_files.json"
MANIFESTS = frozenset({MANIFEST_JSON, MANIFEST_XLSX, MISSING_JSON})
READ_CHUNK = 1024 * 1024


class Progress(Protocol):
    """What the archive classes report progress to (a tqdm bar fits)."""

    def reset(self, total: int | None = None) -> object: ...

    def update(self, n: int = 1) -> object: ...


def archive_file_name(moment: dt.datetime | None = None, extension: str = "zip") -> str:
    moment = (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"images-{moment.strftime('%Y-%m-%dT%H%M%SZ')}.{extension}"
