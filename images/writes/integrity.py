"""Consistency between documents and storage: what `manage.py check_integrity` reports and fixes.

Every writer goes through the write path (`images.writes`), so a crash leaves at most an
expired lease (an interrupted write, finished or undone by `--fix` through recovery), staged
bytes no lease records, or a file no document references (*orphans*, removed by `--fix` under
their key's lease). Every listed object is accounted for: one that is no valid key (unsafe
names, anything unexpected under the reserved prefix, symbolic links on local disk) is
reported as *unaccounted*, never skipped silently. *Missing files* (documents whose file is
gone) and, with `--verify`, *mismatched files* (bytes whose sha256 is not the document's) come
from outside interference and are reported, never guessed at.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from django.conf import settings

from images.core.paths import RESERVED_PREFIX
from images.store.files import STAGING_PREFIX, FileStore, is_storable_key
from images.store.repository import ImageRepository
from images.thumbnails import THUMBNAIL_PREFIX
from images.writes import Intent, Leases
from images.writes.recovery import recover, referenced_keys

BATCH = 500
# Files younger than this may belong to an upload still in flight.
GRACE_PERIOD = dt.timedelta(minutes=5)


@dataclass
class IntegrityReport:
    documents: int = 0
    files: int = 0
    missing_files: list[str] = field(default_factory=list)
    mismatched_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)
    interrupted_writes: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not (
            self.missing_files or self.mismatched_files or self.orphan_files or self.unaccounted
        )


def _batches(items: Iterator, size: int = BATCH) -> Iterator[list]:
    while batch := list(islice(items, size)):
        yield batch


class IntegrityChecker:
    def __init__(
        self, repository: ImageRepository, files: FileStore, grace: dt.timedelta = GRACE_PERIOD
    ) -> None:
        self.repository = repository
        self.files = files
        self.grace = grace
        self.leases = Leases(lambda key, lease: recover(files, key, lease))

    def run(
        self,
        fix: bool = False,
        progress: Callable[[int], None] = lambda n: None,
        verify: bool = False,
    ) -> IntegrityReport:
        report = IntegrityReport()
        self._interrupted_writes(report, fix)
        for document in self.repository.iter_file_facts():
            report.documents += 1
            self._check_document(document, report, verify)
            progress(1)
        staged = self.leases.staging_keys()
        now = dt.datetime.now(dt.UTC)
        for keys in _batches(self.files.iter_all_keys()):
            report.files += len(keys)
            plain = [key for key in keys if not key.startswith(f"{RESERVED_PREFIX}/")]
            known = referenced_keys(key for key in plain if is_storable_key(key))
            for key in keys:
                if key not in known and key not in staged:
                    self._account(key, report, fix, now)
            progress(len(keys))
        return report

    def _interrupted_writes(self, report: IntegrityReport, fix: bool) -> None:
        for key in self.leases.expired():
            report.interrupted_writes.append(key)
            if fix:
                held = self.leases.take({key: Intent()})  # taking an expired lease recovers it
                self.leases.release(held)

    def _check_document(self, document: dict, report: IntegrityReport, verify: bool) -> None:
        file = document.get("file")
        if not is_storable_key(file) or self.files.stat(file) is None:
            report.missing_files.append(str(file))
        elif verify and document.get("sha256") and self._sha256(file) != document["sha256"]:
            report.mismatched_files.append(file)

    def _sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.files.read_chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def _account(self, key: str, report: IntegrityReport, fix: bool, now: dt.datetime) -> None:
        """A listed object no document references and no lease records."""
        if key.startswith(f"{THUMBNAIL_PREFIX}/"):
            return  # a cache, named by content
        if not self._is_plain_object(key):
            report.unaccounted.append(key)
            if fix and not self.files.is_symlink(key) and self.files.delete_raw(key):
                report.removed_files.append(key)
            return
        stored = self.files.stat(key)
        grace = self.grace
        if key.startswith(f"{STAGING_PREFIX}/"):  # staged just before its writer takes a lease
            grace = max(grace, dt.timedelta(seconds=settings.WRITE_LEASE_SECONDS))
        if stored is None or now - stored.modified < grace:
            return
        report.orphan_files.append(key)
        if fix and self._remove_orphan(key):
            report.removed_files.append(key)

    def _is_plain_object(self, key: str) -> bool:
        if key.startswith(f"{STAGING_PREFIX}/"):
            return key.count("/") == STAGING_PREFIX.count("/") + 1 and not self.files.is_symlink(
                key
            )
        if key.startswith(f"{RESERVED_PREFIX}/"):
            return False  # nothing else belongs there
        return is_storable_key(key) and not self.files.is_symlink(key)

    def _remove_orphan(self, key: str) -> bool:
        """Remove an orphan under its lease, unless a writer holds it or a document appeared."""
        held = self.leases.take({key: Intent()})
        if not held.keys:
            return False
        try:
            if referenced_keys([key]):
                return False
            self.files.delete(key)
            return True
        finally:
            self.leases.release(held)
