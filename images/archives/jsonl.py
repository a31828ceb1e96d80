"""`GET /export?format=jsonl`: the selected documents only, one JSON object per line.

Unlike the archives, it honours `select`: the lines carry the fields asked for (the repository
reads `_id` anyway, to reopen a cursor after it, and leaves it out when `select` does).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from images.api.renderers import dumps
from images.archives.streams import StreamedExport
from images.core.documents import to_api
from images.core.query import ImageQuery
from images.store.repository import ImageRepository


class JsonLinesExporter(StreamedExport):
    def __init__(self, repository: ImageRepository, query: ImageQuery, **kwargs: Any) -> None:
        # Documents only: no file is read, so no store is given.
        super().__init__(repository, None, query, **kwargs)  # type: ignore[arg-type]
        self.query = query

    def _pieces(self) -> Generator[bytes, None, None]:
        for document in self._documents():
            yield dumps(to_api(document)) + b"\n"
