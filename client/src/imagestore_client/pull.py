"""`pull`: download the matching images concurrently into a folder, verified, skipping what is there.

Each file is written through a temporary file and renamed once its sha256 matches, so an
interrupted pull leaves no partial file; re-running it downloads only what is missing or wrong.
The documents go to `metadata.jsonl`, one per line, with `file_name` (the local path, as
Hugging Face's `imagefolder` reads it).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from imagestore_client.client import Client
from imagestore_client.errors import ImagestoreError
from imagestore_client.files import safe_relative, sha256_of
from imagestore_client.tally import RunSummary, Tally

METADATA_FILE = "metadata.jsonl"
UNLABELLED = "_unlabelled"
UNSAFE_NAME = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


@dataclass
class PullSummary(RunSummary):
    downloaded: int = 0
    skipped: int = 0
    bytes: int = 0


class Layout:
    """Where each document's file goes below the destination."""

    def __init__(self, spec: str = "keep") -> None:
        if spec == "keep":
            self.field = None
        elif spec.startswith("by-field:") and spec[len("by-field:") :]:
            self.field = spec[len("by-field:") :]
        else:
            raise ValueError(f"Unknown layout {spec!r}: use 'keep' or 'by-field:<field>'")
        self.taken: set[PurePosixPath] = set()

    def path_for(self, document: dict[str, Any]) -> PurePosixPath:
        kept = safe_relative(document["file"])
        if self.field is None:
            return kept
        path = PurePosixPath(folder_name(_field_value(document, self.field)), kept.name)
        if path in self.taken:  # two images of one class with the same name
            path = path.with_name(f"{kept.stem}-{document['_id']}{kept.suffix}")
        self.taken.add(path)
        return path


def folder_name(value: Any) -> str:
    """A field value as one safe folder name (`_unlabelled` when the field is missing)."""
    if value is None or value == "":
        return UNLABELLED
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    name = UNSAFE_NAME.sub("_", text).strip()
    return "_" if name in ("", ".", "..") else name[:200]


def _field_value(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document.get("data") or {}
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class Puller:
    def __init__(
        self,
        client: Client,
        dest: Path,
        layout: Layout | None = None,
        jobs: int = 8,
        progress: Callable[[int], None] = lambda n: None,
        write_metadata: bool = True,
    ) -> None:
        self.client = client
        self.write_metadata = write_metadata
        self.dest = dest
        self.layout = layout or Layout()
        self.jobs = jobs
        self.summary = PullSummary()
        self.tally = Tally(self.summary, progress)

    def run(self, documents: Iterable[dict[str, Any]]) -> PullSummary:
        started = time.monotonic()
        self.dest.mkdir(parents=True, exist_ok=True)
        metadata = self.dest / f".{METADATA_FILE}.partial"
        with (
            open(metadata, "w", encoding="utf-8") as lines,
            ThreadPoolExecutor(self.jobs, thread_name_prefix="imagestore-pull") as pool,
        ):
            in_flight: set[Future] = set()
            try:
                for document in documents:
                    in_flight.add(self._submit(pool, document, lines))
                    while len(in_flight) >= self.jobs * 4:
                        _, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                wait(in_flight)
            except KeyboardInterrupt:
                self.summary.interrupted = True
                pool.shutdown(wait=True, cancel_futures=True)
            except ImagestoreError as error:  # the listing itself failed
                self.summary.failed.append(("(query)", str(error)))
        listed = not self.summary.interrupted and all(
            f[0] != "(query)" for f in self.summary.failed
        )
        if not (listed and self.write_metadata):
            metadata.unlink(missing_ok=True)
        else:
            os.replace(metadata, self.dest / METADATA_FILE)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _submit(self, pool: ThreadPoolExecutor, document: dict[str, Any], lines) -> Future:
        try:
            relative = self.layout.path_for(document)
        except ImagestoreError as error:
            return pool.submit(self._failed, document.get("file", "?"), str(error))
        lines.write(json.dumps({**document, "file_name": relative.as_posix()}) + "\n")
        return pool.submit(self._fetch, document, relative)

    def _fetch(self, document: dict[str, Any], relative: PurePosixPath) -> None:
        local = self.dest / relative
        try:
            if _already_there(local, document):
                self._count(skipped=1)
                return
            self.client.download(document, local)
        except (ImagestoreError, OSError) as error:
            self._failed(relative.as_posix(), str(error))
            return
        except Exception as error:  # anything else fails this file, never the whole pull
            self._failed(relative.as_posix(), f"{type(error).__name__}: {error}")
            return
        self._count(downloaded=1, bytes=local.stat().st_size)

    def _count(self, **outcome: int) -> None:
        self.tally.add(**outcome)

    def _failed(self, name: str, reason: str) -> None:
        self.tally.fail(name, reason)


def _already_there(local: Path, document: dict[str, Any]) -> bool:
    if not local.is_file():
        return False
    if document.get("sha256"):
        return sha256_of(local) == document["sha256"]
    return document.get("size") is not None and local.stat().st_size == document["size"]
