"""The streamed export: the images selected by a query, then their manifests, as one zip."""

from __future__ import annotations

import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from images.api.renderers import dumps
from images.archives.layout import MANIFEST_JSON, MANIFEST_XLSX, MANIFESTS, MISSING_JSON
from images.archives.spreadsheet import write_documents_xlsx
from images.archives.streams import (
    StreamedExport,
    UnreadableFile,
    file_chunks,
    json_array,
    open_stored,
)
from images.core.documents import to_api
from images.core.paths import is_safe_file_path


class ArchiveExporter(StreamedExport):
    """The images selected by `query` as a zip, produced while it is sent."""

    def _pieces(self) -> Generator[bytes, None, None]:
        archive = ZipStream(compress_type=ZIP_STORED)
        data_keys: dict[str, None] = {}
        with tempfile.TemporaryDirectory(prefix="imagestore-export-") as scratch:
            documents_path = Path(scratch) / "documents.jsonl"
            missing_path = Path(scratch) / "missing.jsonl"
            with open(documents_path, "wb") as documents, open(missing_path, "wb") as missing:
                for document in self._documents():
                    printed = to_api(document)
                    documents.write(dumps(printed) + b"\n")
                    if isinstance(printed.get("data"), dict):
                        data_keys.update(dict.fromkeys(printed["data"]))
                    problem = self._add_image(archive, printed.get("file"))
                    if problem:
                        self.missing += 1
                        report = {"_id": printed["_id"], "file": printed.get("file")}
                        missing.write(dumps({**report, "reason": problem}) + b"\n")
                    yield from archive.all_files()
            archive.add(json_array(documents_path), MANIFEST_JSON, compress_type=ZIP_DEFLATED)
            yield from archive.all_files()
            xlsx_path = Path(scratch) / MANIFEST_XLSX
            write_documents_xlsx(documents_path, data_keys, xlsx_path)
            archive.add(file_chunks(xlsx_path), MANIFEST_XLSX, compress_type=ZIP_DEFLATED)
            if self.missing:
                archive.add(json_array(missing_path), MISSING_JSON, compress_type=ZIP_DEFLATED)
            yield from archive.finalize()

    def _add_image(self, archive: ZipStream, file: Any) -> str | None:
        """Queue the file at its path; return why it cannot be, if it cannot."""
        if is_safe_file_path(file) and file in MANIFESTS:
            return "name reserved for the archive's manifests"
        try:
            opened = open_stored(self.files, file)
        except UnreadableFile as problem:
            return str(problem)
        archive.add(opened.chunks, file, size=opened.size)
        return None
