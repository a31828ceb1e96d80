"""`python manage.py check_integrity [--fix]`: documents without files, files without documents."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from images.integrity import IntegrityChecker
from images.repository import ImageRepository
from images.storage import get_file_store

LISTED = 20


class Command(BaseCommand):
    help = "Report documents whose file is missing and files no document points to."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--fix", action="store_true", help="remove orphan files")
        parser.add_argument(
            "--grace-seconds",
            type=int,
            default=300,
            help="ignore files younger than this (uploads in flight)",
        )

    def handle(self, *args, fix: bool = False, grace_seconds: int = 300, **options) -> None:
        repository = ImageRepository()
        grace = dt.timedelta(seconds=grace_seconds)
        checker = IntegrityChecker(repository, get_file_store(), grace)
        total = repository.count({})
        with tqdm(desc="checking", unit="item", total=None, disable=None) as bar:
            report = checker.run(fix=fix, progress=bar.update)
        self.stdout.write(
            f"{report.documents} documents (of {total} counted), {report.files} files: "
            f"{len(report.missing_files)} documents with a missing file, "
            f"{len(report.orphan_files)} orphan files"
            + (f", {len(report.removed_files)} removed" if fix else "")
        )
        for label, items in (
            ("missing file", report.missing_files),
            ("orphan file", report.orphan_files),
        ):
            for item in items[:LISTED]:
                self.stdout.write(f"  {label}: {item}")
            if len(items) > LISTED:
                self.stdout.write(f"  ... and {len(items) - LISTED} more {label}s")
        if report.missing_files or (report.orphan_files and not fix):
            raise CommandError(
                "inconsistent: see the report above"
                + ("" if fix else " (--fix removes orphan files)")
            )
