"""`python manage.py import_images IN.zip [--data JSON]`: the import of `POST /import`."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from images.archives import ArchiveImporter
from images.core.errors import ImageStoreError
from images.store.files import get_file_store
from images.store.repository import ImageRepository
from images.writes.uploads import parse_json_object, validate_data

LISTED = 20


class Command(BaseCommand):
    help = "Import a zip archive (images and mongodb_data.json), as POST /import does."

    def add_arguments(self, parser) -> None:
        parser.add_argument("archive", help="the zip file to read")
        parser.add_argument("--data", help="JSON object merged over every document's data")
        parser.add_argument("--user", help="import as this user (IMAGE_SCOPE=user)")

    def handle(self, *args, archive: str, data: str | None = None, **options) -> None:
        path = Path(archive)
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        started = time.monotonic()
        try:
            extra = parse_json_object(data, "--data") if data is not None else {}
            validate_data(extra)
            repository = ImageRepository(owner=options.get("user") or None)
            with tqdm(unit="image", desc="importing", disable=None) as bar:
                importer = ArchiveImporter(repository, get_file_store(), extra, progress=bar)
                result = importer.run(path, path.name)
        except ImageStoreError as error:
            raise CommandError(error.detail) from None
        seconds = time.monotonic() - started
        for item in result.skipped[:LISTED]:
            self.stdout.write(f"  skipped {item['entry']}: {item['reason']}")
        if result.skipped_count > LISTED:
            self.stdout.write(f"  ... and {result.skipped_count - LISTED} more skipped")
        self.stdout.write(
            f"Imported {result.imported} images from {path} "
            f"({result.skipped_count} skipped) in {seconds:.1f} s"
        )
