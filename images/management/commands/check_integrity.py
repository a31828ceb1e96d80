"""`python manage.py check_integrity [--fix] [--verify]`: documents without files, files without
documents, objects nothing accounts for, interrupted writes; `--verify` hashes every file.

Exit status 0 when nothing is wrong that is neither repaired nor marked on its document (marked
documents are listed on every run), 1 otherwise."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from images.store.files import get_file_store
from images.store.repository import ImageRepository
from images.writes.integrity import IntegrityChecker, IntegrityReport

LISTED = 20


class Command(BaseCommand):
    help = (
        "Report documents whose file is missing or wrong and files no document points to; "
        "--fix repairs them or marks the documents."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--fix",
            action="store_true",
            help="finish or undo interrupted writes, remove orphan and unaccounted files, "
            "restore lost files from staged bytes or mark their documents broken",
        )
        parser.add_argument(
            "--verify", action="store_true", help="hash every file and compare with its document"
        )
        parser.add_argument(
            "--grace-seconds",
            type=int,
            default=300,
            help="ignore files younger than this (uploads in flight)",
        )

    def handle(
        self,
        *args,
        fix: bool = False,
        verify: bool = False,
        grace_seconds: int = 300,
        **options,
    ) -> None:
        repository = ImageRepository()
        grace = dt.timedelta(seconds=grace_seconds)
        checker = IntegrityChecker(repository, get_file_store(), grace)
        total = repository.count({})
        with tqdm(desc="checking", unit="item", total=None, disable=None) as bar:
            report = checker.run(fix=fix, progress=bar.update, verify=verify)
        self.stdout.write(_summary(report, total, fix, verify))
        for label, items in (
            ("missing file", report.missing_files),
            ("mismatched file", report.mismatched_files),
            ("orphan file", report.orphan_files),
            ("unaccounted object", [repr(key) for key in report.unaccounted]),
            ("interrupted write", report.interrupted_writes),
            ("restored file", report.restored_files),
            ("cleared mark", report.cleared_marks),
            ("marked broken", report.marked),
        ):
            self._list(label, items)
        if not report.settled:
            raise CommandError(
                "inconsistent: see the report above"
                + ("" if fix else " (--fix repairs it or marks the documents)")
            )

    def _list(self, label: str, items: list[str]) -> None:
        for item in items[:LISTED]:
            self.stdout.write(f"  {label}: {item}")
        if len(items) > LISTED:
            self.stdout.write(f"  ... and {len(items) - LISTED} more ({label})")


def _summary(report: IntegrityReport, total: int, fix: bool, verify: bool) -> str:
    parts = [
        f"{len(report.missing_files)} documents with a missing file",
        f"{len(report.orphan_files)} orphan files",
        f"{len(report.unaccounted)} unaccounted objects",
        f"{len(report.interrupted_writes)} interrupted writes",
    ]
    if verify:
        parts.append(f"{len(report.mismatched_files)} files not matching their sha256")
    if fix:
        parts.append(f"{len(report.removed_files)} removed")
        parts.append(f"{len(report.restored_files)} restored")
    parts.append(f"{len(report.marked)} documents marked broken")
    counted = f"{report.documents} documents (of {total} counted), {report.files} files"
    return f"{counted}: " + ", ".join(parts)
