"""Consistency between documents and storage: what `manage.py check_integrity` reports and fixes.

Every writer goes through the write path (`images.writes`), so a crash leaves at most an
expired lease (an interrupted write, finished or undone by `--fix` through recovery), staged
bytes no lease records, or a file no document references (*orphans*, removed by `--fix` under
their key's lease). Every listed object is accounted for: one that is no valid key (unsafe
names, anything unexpected under the reserved prefix, symbolic links on local disk) is
reported as *unaccounted*, never skipped silently.

*Missing files* (documents whose file is gone) and, with `--verify`, *mismatched files* (bytes
whose sha256 is not the document's) come from outside interference. `--fix` puts the right
bytes back when some staged object still holds them, else marks the document (`integrity:
{status: "missing" | "mismatched", checked, foundSha256}`, see `images.writes.repair`);
documents are never deleted. Every run lists the marked documents apart from new findings; a
marked file is hashed under `--fix` and its mark cleared once it holds the right bytes again (a
re-upload of the path clears it too). Documents of keys with an interrupted write are checked
after `--fix` recovered it; the others before, while the staged bytes of interrupted writes
(of the same picture at another path) may still restore them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from django.conf import settings

from images.core.documents import INTEGRITY
from images.core.paths import RESERVED_PREFIX
from images.store.files import STAGING_PREFIX, FileStore, is_storable_key
from images.store.repository import ImageRepository
from images.thumbnails import THUMBNAIL_PREFIX
from images.writes import Intent, Leases
from images.writes.recovery import recover, referenced_keys, referencing_sha256
from images.writes.repair import MISSING, Outcome, Repairer, examine

BATCH = 500
# Files younger than this may belong to an upload still in flight.
GRACE_PERIOD = dt.timedelta(minutes=5)


@dataclass
class IntegrityReport:
    documents: int = 0
    files: int = 0
    # Found by this run (not marked so already):
    missing_files: list[str] = field(default_factory=list)
    mismatched_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    unaccounted: list[str] = field(default_factory=list)
    interrupted_writes: list[str] = field(default_factory=list)
    # What `fix` did:
    removed_files: list[str] = field(default_factory=list)
    restored_files: list[str] = field(default_factory=list)
    cleared_marks: list[str] = field(default_factory=list)
    # Documents marked broken after this run, and missing or mismatched files left unmarked.
    marked: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not (
            self.missing_files or self.mismatched_files or self.orphan_files or self.unaccounted
        )

    @property
    def settled(self) -> bool:
        """Nothing is wrong that is neither repaired nor marked on its document."""
        removed = set(self.removed_files)
        leftovers = [key for key in self.orphan_files + self.unaccounted if key not in removed]
        return not (self.unresolved or leftovers)


def _batches(items: Iterator, size: int = BATCH) -> Iterator[list]:
    while batch := list(islice(items, size)):
        yield batch


def _described(document: dict, status: str | None) -> str:
    return f"{document.get('file')} ({status}, _id {document['_id']})"


class IntegrityChecker:
    def __init__(
        self, repository: ImageRepository, files: FileStore, grace: dt.timedelta = GRACE_PERIOD
    ) -> None:
        self.repository = repository
        self.files = files
        self.grace = grace
        self.leases = Leases(lambda key, lease: recover(files, key, lease))
        self.repairer = Repairer(files, self.leases)

    def run(
        self,
        fix: bool = False,
        progress: Callable[[int], None] = lambda n: None,
        verify: bool = False,
    ) -> IntegrityReport:
        report = IntegrityReport()
        expired = set(self.leases.expired())
        # Documents of keys with an interrupted write are checked once it is recovered; the
        # others first, while the staged bytes of interrupted writes may still restore them.
        deferred = []
        for document in self.repository.iter_file_facts():
            report.documents += 1
            if fix and document.get("file") in expired:
                deferred.append(document)
            else:
                self._check_document(document, report, fix, verify)
            progress(1)
        self._interrupted_writes(expired, report, fix)
        for document in deferred:
            self._check_document(document, report, fix, verify)
        self._check_files(report, fix, progress)
        return report

    def _check_files(
        self, report: IntegrityReport, fix: bool, progress: Callable[[int], None]
    ) -> None:
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

    def _interrupted_writes(self, expired: set[str], report: IntegrityReport, fix: bool) -> None:
        for key in expired:
            report.interrupted_writes.append(key)
            if fix:
                held = self.leases.take({key: Intent()})  # taking an expired lease recovers it
                self.leases.release(held)

    def _check_document(
        self, document: dict, report: IntegrityReport, fix: bool, verify: bool
    ) -> None:
        old_mark = document.get(INTEGRITY) or {}
        # A marked file is hashed before its mark is kept or cleared.
        mark = examine(self.files, document, hashed=verify or (fix and bool(old_mark)))
        if mark is not None and mark["status"] != old_mark.get("status"):
            found = report.missing_files if mark["status"] == MISSING else report.mismatched_files
            found.append(str(document.get("file")))
        if fix and (mark or old_mark):
            self._repair(document, mark, report)
        elif old_mark:
            report.marked.append(_described(document, old_mark.get("status")))
        elif mark is not None:
            report.unresolved.append(str(document.get("file")))

    def _repair(self, document: dict, mark: dict | None, report: IntegrityReport) -> None:
        outcome = self.repairer.repair(document, broken=mark is not None)
        file = str(document.get("file"))
        old_mark = document.get(INTEGRITY) or {}
        if outcome is Outcome.RESTORED:
            report.restored_files.append(file)
        elif outcome is Outcome.MARKED:
            report.marked.append(_described(document, (mark or old_mark)["status"]))
        elif outcome is Outcome.TAKEN_BACK:
            report.removed_files.append(file)
            report.marked.append(_described(document, MISSING))
        elif outcome is Outcome.BUSY and old_mark:
            report.marked.append(_described(document, old_mark["status"]))
        elif outcome is Outcome.BUSY:
            report.unresolved.append(file)
        if old_mark and outcome in (Outcome.RESTORED, Outcome.SETTLED):
            report.cleared_marks.append(file)

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
            if not is_storable_key(key):  # staged bytes that no lease records
                self.files.delete(key)
                return True
            return bool(self.files.remove_unreferenced([key], referencing_sha256))
        finally:
            self.leases.release(held)
