"""`pull --sync` and `watch`: a folder kept equal to the caller's images through `GET /changes`.

`DEST/.imagestore-sync.json` holds the feed's cursor. A first run, or one whose cursor the
service no longer has (410), is a full resync: it takes a cursor first (what changes during
the listing is replayed next time), pulls every image verifying each local file's sha256,
removes the files of images that are gone, and saves the cursor. Later runs read the changes
after the cursor a page at a time: new and changed images are downloaded, deleted ones removed,
`metadata.jsonl` rewritten, and only then the cursor saved; a run interrupted midway starts
again from the last page it finished (files it had downloaded are skipped by hash).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagestore_client.client import Client
from imagestore_client.errors import Gone
from imagestore_client.files import safe_relative
from imagestore_client.pull import METADATA_FILE, Puller, PullSummary

STATE_FILE = ".imagestore-sync.json"
PAGE_SIZE = 1000
FEED_FIELDS = ("op", "changedAt")


@dataclass
class SyncSummary(PullSummary):
    removed: int = 0
    changes: int = 0
    full: bool = False

    def add(self, pulled: PullSummary) -> None:
        self.downloaded += pulled.downloaded
        self.skipped += pulled.skipped
        self.bytes += pulled.bytes
        self.failed += pulled.failed
        self.interrupted = self.interrupted or pulled.interrupted

    @property
    def complete(self) -> bool:
        return not (self.failed or self.interrupted)


class Mirror:
    """The folder's record of what it holds: `metadata.jsonl` by `_id`, and the cursor."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.documents = read_metadata(dest / METADATA_FILE)

    def cursor(self) -> str | None:
        try:
            return json.loads((self.dest / STATE_FILE).read_text())["cursor"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def save(self, cursor: str) -> None:
        """metadata.jsonl, then the cursor (a crash between them replays changes: harmless)."""
        lines = (json.dumps(self.documents[key]) + "\n" for key in sorted(self.documents))
        write_atomically(self.dest / METADATA_FILE, "".join(lines))
        write_atomically(self.dest / STATE_FILE, json.dumps({"cursor": cursor}) + "\n")

    def paths_in_use(self) -> set[str]:
        return {document["file_name"] for document in self.documents.values()}

    def remove(self, paths: Iterable[str]) -> int:
        """Delete these local files unless an image still uses their path; how many were."""
        in_use = self.paths_in_use()
        removed = 0
        for relative in set(paths) - in_use:
            local = self.dest / relative
            if local.is_file():
                local.unlink()
                removed += 1
                remove_empty_folders(local.parent, self.dest)
        return removed


@dataclass
class Syncer:
    client: Client
    dest: Path
    jobs: int = 8
    progress: Callable[[int], None] = lambda n: None
    page_size: int = PAGE_SIZE

    def run(self, wait: float = 0) -> SyncSummary:
        """One sync: the changes since the saved cursor (a full resync without one, or on 410);
        `wait` seconds for the first change when there is none yet."""
        started = time.monotonic()
        self.dest.mkdir(parents=True, exist_ok=True)
        mirror = Mirror(self.dest)
        cursor = mirror.cursor()
        try:
            summary = self.full(mirror) if cursor is None else self.follow(mirror, cursor, wait)
        except Gone:
            summary = self.full(Mirror(self.dest))
        summary.seconds = time.monotonic() - started
        return summary

    def full(self, mirror: Mirror) -> SyncSummary:
        summary = SyncSummary(full=True)
        cursor = self.client.changes()["next"]
        before = mirror.paths_in_use()
        puller = Puller(self.client, self.dest, jobs=self.jobs, progress=self.progress)
        summary.add(puller.run(self.client.find()))
        if summary.complete:
            mirror = Mirror(self.dest)  # as the pull wrote it
            summary.removed = mirror.remove(before)
            mirror.save(cursor)
        return summary

    def follow(self, mirror: Mirror, cursor: str, wait: float) -> SyncSummary:
        summary = SyncSummary()
        while True:
            page = self.client.changes(cursor, self.page_size, wait)
            if page["changes"]:
                self.apply(mirror, page["changes"], summary)
                if not summary.complete:
                    return summary
            if page["next"] != cursor or page["changes"]:
                mirror.save(page["next"])
            cursor, wait = page["next"], 0
            if not page["changes"]:
                # Caught up. Not a short page: the service ends a page early once its changes
                # pass DOCUMENT_BUFFER_SIZE bytes.
                return summary

    def apply(self, mirror: Mirror, changes: list[dict[str, Any]], summary: SyncSummary) -> None:
        latest = {change["_id"]: change for change in changes}  # the last change of each image
        summary.changes += len(changes)
        gone: list[str] = []
        wanted: list[dict[str, Any]] = []
        for image_id, change in latest.items():
            old = mirror.documents.pop(image_id, None)
            if old is not None:
                gone.append(old["file_name"])
            if change["op"] != "delete":
                document = as_listed(change)
                mirror.documents[image_id] = document
                wanted.append(document)
        summary.removed += mirror.remove(gone)
        puller = Puller(self.client, self.dest, jobs=self.jobs, write_metadata=False)
        summary.add(puller.run(wanted))


def as_listed(change: dict[str, Any]) -> dict[str, Any]:
    """A change of the feed as pull lists a document: without the feed's fields, with
    `file_name` (its local path)."""
    document = {key: value for key, value in change.items() if key not in FEED_FIELDS}
    return {**document, "file_name": safe_relative(document["file"]).as_posix()}


def read_metadata(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    documents = (json.loads(line) for line in text.splitlines() if line.strip())
    return {document["_id"]: document for document in documents if "file_name" in document}


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def remove_empty_folders(folder: Path, root: Path) -> None:
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
