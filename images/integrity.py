"""Consistency between documents and files: what `manage.py check_integrity` reports and fixes.

Writes put the file first and the document second; deletes remove the document first and the
file second. A process killed between the two steps therefore leaves only *orphan files* (files no
document points to), which `--fix` removes. *Missing files* (documents whose file is gone) come
from outside interference and are reported, never guessed at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from images.repository import ImageRepository
from images.storage import FileStore

BATCH = 500
# Files younger than this may belong to an upload still in flight.
GRACE_PERIOD = dt.timedelta(minutes=5)


@dataclass
class IntegrityReport:
    documents: int = 0
    files: int = 0
    missing_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.missing_files and not self.orphan_files


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

    def run(self, fix: bool = False, progress: Callable[[int], None] = lambda n: None):
        report = IntegrityReport()
        for file in self.repository.iter_all_files():
            report.documents += 1
            if self.files.stat(file) is None:
                report.missing_files.append(file)
            progress(1)
        now = dt.datetime.now(dt.UTC)
        for keys in _batches(self.files.iter_keys()):
            report.files += len(keys)
            known = self.repository.known_files(keys)
            for key in keys:
                if key in known:
                    continue
                stored = self.files.stat(key)
                if stored is None or now - stored.modified < self.grace:
                    continue
                report.orphan_files.append(key)
                if fix:
                    self.files.delete(key)
                    report.removed_files.append(key)
            progress(len(keys))
        return report
