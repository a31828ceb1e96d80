"""`GET /export?format=jsonl`: the selected documents only, one JSON object per line.

Unlike the archives, it honours `select`: the lines carry the fields asked for.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
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
        self.query, self.without_id = _keeping_id(query)

    def _pieces(self) -> Generator[bytes, None, None]:
        for document in self._documents():
            printed = to_api(document)
            if self.without_id:
                printed.pop("_id", None)
            yield dumps(printed) + b"\n"


def _keeping_id(query: ImageQuery) -> tuple[ImageQuery, bool]:
    """The query with `_id` always read (a dropped cursor resumes after the last `_id`), and
    whether the lines should leave it out."""
    projection = query.projection
    if not projection or projection.get("_id", 1):
        return query, False
    rest = {name: include for name, include in projection.items() if name != "_id"}
    return replace(query, projection=rest or None), True
