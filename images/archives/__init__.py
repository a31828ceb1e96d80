"""Whole datasets as archives: streamed exports (the original's zip and training formats) and a
safe import of the original's zip.

An archive holds every image at its `file` path, then `mongodb_data.json` (a JSON array of the
documents as the API prints them) and `mongodb_data.xlsx` (one row per document). When a
document's file cannot be read from storage, the document stays in `mongodb_data.json` and is
listed, with the reason, in `missing_files.json`; an import skips (and reports) documents whose
file is neither in the archive nor already in storage, so no document ever lacks its file.

Neither direction holds the dataset in memory. `export` reads the documents a batch at a time
from one cursor (reopened where it stopped if the server drops it) and streams each file from
storage into the zip. `entries` checks and sorts an uploaded zip's entries before anything is
written and parses `mongodb_data.json` as a stream; `importer` stores the files entry by entry
and hands their documents, in batches and after their files, to `document_writer`.
`import_index` keeps the manifest on disk while an import runs; `spreadsheet` writes the xlsx.

`formats` maps the `format` parameter of an export to its writer: `export` (the zip above),
`webdataset` (a tar of samples), `imagefolder` (label folders, named by `folder_names`) and
`jsonl` (documents only); `streams` holds what they share.
"""

from images.archives.entries import manifest_items
from images.archives.formats import FORMATS, ExportRequest
from images.archives.importer import ArchiveImporter, ImportResult
from images.archives.layout import archive_file_name
from images.archives.zip_export import ArchiveExporter

__all__ = [
    "FORMATS",
    "ArchiveExporter",
    "ArchiveImporter",
    "ExportRequest",
    "ImportResult",
    "archive_file_name",
    "manifest_items",
]
