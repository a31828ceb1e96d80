"""`python manage.py check_integrity [--fix] [--verify]`: documents without files, files without
documents, objects nothing accounts for, interrupted writes; `--verify` hashes every file."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from images.store.files import get_file_store
from images.store.repository import ImageRepository
from images.writes.integrity import IntegrityChecker

LISTED = 20


class Command(BaseCommand):
    help = "Report documents whose file is missing and files no document points to."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--fix",
            action="store_true",
            help="finish or undo interrupted writes, remove orphan and unaccounted files",
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
        self.stdout.write(
            f"{report.documents} documents (of {total} counted), {report.files} files: "
            f"{len(report.missing_files)} documents with a missing file, "
            f"{len(report.orphan_files)} orphan files, "
            f"{len(report.unaccounted)} unaccounted objects, "
            f"{len(report.interrupted_writes)} interrupted writes"
            + (
                f", {len(report.mismatched_files)} files not matching their sha256"
                if verify
                else ""
            )
            + (f", {len(report.removed_files)} removed" if fix else "")
        )
        for label, items in (
            ("missing file", report.missing_files),
            ("mismatched file", report.mismatched_files),
            ("orphan file", report.orphan_files),
            ("unaccounted object", [repr(key) for key in report.unaccounted]),
            ("interrupted write", report.interrupted_writes),
        ):
            for item in items[:LISTED]:
                self.stdout.write(f"  {label}: {item}")
            if len(items) > LISTED:
                self.stdout.write(f"  ... and {len(items) - LISTED} more {label}s")
        repaired = fix and set(report.orphan_files + report.unaccounted) <= set(
            report.removed_files
        )
        if report.missing_files or report.mismatched_files or not (report.consistent or repaired):
            raise CommandError(
                "inconsistent: see the report above"
                + ("" if fix else " (--fix removes orphan files)")
            )
