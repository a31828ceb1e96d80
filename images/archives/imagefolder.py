"""`GET /export?format=imagefolder&by=label`: a zip of `<label>/<name>` folders and
`metadata.jsonl`, the layout torchvision's `ImageFolder` and Hugging Face's `imagefolder`
loader read.

The folder is the value of `data.<by>` (see folder_names for how values become names;
images without one go to `_unlabelled/`), the name is the base name of the image's `file`,
with the image's id added when that name is already taken in the folder. `metadata.jsonl`
has one line per image in the archive: `file_name` (its path in the archive) then its
document. Images whose file cannot be read are listed, with the reason, in
`missing_files.json`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from images.api.renderers import dumps
from images.archives.folder_names import (
    METADATA_JSONL,
    MISSING_JSON,
    FolderNames,
    label_folder,
    label_value,
)
from images.archives.streams import (
    StreamedExport,
    UnreadableFile,
    file_chunks,
    id_key,
    json_array,
    open_stored,
)
from images.core.documents import to_api


class ImageFolderExporter(StreamedExport):
    """The images selected by `query` in one folder per value of `data.<by>`, as a zip."""

    def __init__(self, *args: Any, by: str = "label", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.by = by

    def _pieces(self) -> Iterator[bytes]:
        archive = ZipStream(compress_type=ZIP_STORED)
        with tempfile.TemporaryDirectory(prefix="imagestore-export-") as scratch:
            metadata_path = Path(scratch) / "metadata.jsonl"
            missing_path = Path(scratch) / "missing.jsonl"
            names = FolderNames(Path(scratch) / "names.sqlite3")
            try:
                with open(metadata_path, "wb") as metadata, open(missing_path, "wb") as missing:
                    for document in self._documents():
                        printed = to_api(document)
                        try:
                            opened = open_stored(self.files, printed.get("file"))
                        except UnreadableFile as problem:
                            self.missing += 1
                            report = {"_id": printed["_id"], "file": printed.get("file")}
                            missing.write(dumps({**report, "reason": str(problem)}) + b"\n")
                        else:
                            folder = label_folder(label_value(printed.get("data"), self.by))
                            path = names.claim(folder, printed["file"], id_key(document["_id"]))
                            archive.add(opened.chunks, path, size=opened.size)
                            metadata.write(dumps({"file_name": path, **printed}) + b"\n")
                        yield from archive.all_files()
            finally:
                names.close()
            archive.add(file_chunks(metadata_path), METADATA_JSONL, compress_type=ZIP_DEFLATED)
            if self.missing:
                archive.add(json_array(missing_path), MISSING_JSON, compress_type=ZIP_DEFLATED)
            yield from archive.finalize()
