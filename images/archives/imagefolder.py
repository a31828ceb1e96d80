"""`GET /export?format=imagefolder&by=label[&split=split]`: a zip of `[<split>/]<label>/<name>`
folders and `metadata.jsonl`, the layout torchvision's `ImageFolder` and Hugging Face's
`imagefolder` loader read.

The label folder is the value of `data.<by>` (see folder_names for how values become names;
images without one go to `_unlabelled/`), the name is the base name of the image's `file`,
with the image's id added when that name is already taken in the folder. With `split`, the
value of `data.<split>` (a Hugging Face split name) is the top folder, and each split folder
has its own `metadata.jsonl`. A `metadata.jsonl` has one line per image under it:
`file_name` (its path from the metadata file), `label` (the label as text, null for none),
then its document with every key any selected document has (null where it lacks one) and its
`data` as JSON text: Hugging Face types each split's metadata on its own and refuses splits
whose types differ, which a `data` key found in one split only would bring. Values
that would share a folder, and images without a split, are refused before the export starts
(folder_check). Images whose file cannot be read are listed, with the reason, in
`missing_files.json`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

from zipstream import ZIP_DEFLATED, ZIP_STORED, ZipStream

from images.api.renderers import dumps
from images.archives.folder_check import check_folders
from images.archives.folder_names import (
    METADATA_JSONL,
    MISSING_JSON,
    FolderNames,
    label_folder,
    label_text,
    label_value,
)
from images.archives.sample_keys import SampleKeys, survey_keys
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
    """The images selected by `query` in one folder per value of `data.<by>` (under one per
    value of `data.<split>`), as a zip."""

    def __init__(self, *args: Any, by: str = "label", split: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.by = by
        self.split = split

    def _pieces(self) -> Generator[bytes, None, None]:
        check_folders(self.repository, self.query, self.by, self.split)
        keys = survey_keys(self.repository, self.query)
        archive = ZipStream(compress_type=ZIP_STORED)
        with tempfile.TemporaryDirectory(prefix="imagestore-export-") as scratch:
            metadata = SplitMetadata(Path(scratch))
            missing_path = Path(scratch) / "missing.jsonl"
            names = FolderNames(Path(scratch) / "names.sqlite3")
            try:
                with open(missing_path, "wb") as missing:
                    for document in self._documents():
                        self._add(archive, names, metadata, missing, keys, document)
                        yield from archive.all_files()
            finally:
                names.close()
                metadata.close()
            for name, path in metadata.files():
                archive.add(file_chunks(path), name, compress_type=ZIP_DEFLATED)
            if self.missing:
                archive.add(json_array(missing_path), MISSING_JSON, compress_type=ZIP_DEFLATED)
            yield from archive.finalize()

    def _add(
        self,
        archive: ZipStream,
        names: FolderNames,
        metadata: SplitMetadata,
        missing: IO[bytes],
        keys: SampleKeys,
        document: dict[str, Any],
    ) -> None:
        printed = to_api(document)
        try:
            opened = open_stored(self.files, printed.get("file"))
        except UnreadableFile as problem:
            self.missing += 1
            report = {"_id": printed["_id"], "file": printed.get("file"), "reason": str(problem)}
            missing.write(dumps(report) + b"\n")
            return
        label = label_value(printed.get("data"), self.by)
        top = f"{label_value(printed.get('data'), self.split)}/" if self.split else ""
        path = names.claim(top + label_folder(label), printed["file"], id_key(document["_id"]))
        archive.add(opened.chunks, path, size=opened.size)
        line = {"file_name": path.removeprefix(top), "label": label_text(label)}
        fields = keys.fill(printed)
        fields["data"] = dumps(printed.get("data") or {}).decode()
        metadata.write(top, dumps({**line, **fields}) + b"\n")


class SplitMetadata:
    """One `metadata.jsonl` per split folder (`""`: the root), written to scratch files."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.opened: dict[str, IO[bytes]] = {}

    def write(self, top: str, line: bytes) -> None:
        if top not in self.opened:
            self.opened[top] = open(self._path(top), "wb")  # noqa: SIM115 (closed by close)
        self.opened[top].write(line)

    def files(self) -> list[tuple[str, Path]]:
        """(name in the archive, scratch file) of each metadata file, a root one always."""
        tops = sorted(self.opened) or [""]
        return [(f"{top}{METADATA_JSONL}", self._path(top)) for top in tops]

    def close(self) -> None:
        for handle in self.opened.values():
            handle.close()

    def _path(self, top: str) -> Path:
        path = self.scratch / f"metadata-{top.rstrip('/') or 'root'}.jsonl"
        path.touch()
        return path
