"""`python manage.py export_images OUT [--format F] [--filter JSON] ...`: `GET /export` to a
file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict
from tqdm import tqdm

from images.api.export_parameters import export_request
from images.archives import FORMATS
from images.core.errors import ImageStoreError
from images.store.files import get_file_store
from images.store.repository import ImageRepository

QUERY_OPTIONS = ("format", "by", "split", "filter", "limit", "skip", "sort", "order")


class Command(BaseCommand):
    help = "Write the matching images and their documents to a file, as GET /export does."

    def add_arguments(self, parser) -> None:
        parser.add_argument("out", help="the file to write")
        parser.add_argument("--format", choices=list(FORMATS), help="as GET /export (default zip)")
        parser.add_argument("--by", help="with --format imagefolder: the data key of the folders")
        parser.add_argument("--split", help="with --format imagefolder: the data key of the splits")
        parser.add_argument("--filter", help="MongoDB query document (JSON), as in GET /images")
        parser.add_argument("--limit", help="at most this many images (0 = all)")
        parser.add_argument("--skip", help="skip this many images first")
        parser.add_argument("--sort", help="field to sort on (time, file, data.camera, ...)")
        parser.add_argument("--order", help="1/asc or -1/desc")
        parser.add_argument("--user", help="export this user's images only (IMAGE_SCOPE=user)")

    def handle(self, *args, out: str, user: str | None = None, **options) -> None:
        params = QueryDict(mutable=True)
        for name in QUERY_OPTIONS:
            if options.get(name) is not None:
                params[name] = str(options[name])
        target = Path(out)
        partial = target.with_name(f".{target.name}.partial")
        started = time.monotonic()
        try:
            export = export_request(params)
            query = export.query
            repository = ImageRepository(owner=user or None)
            total = _expected_count(repository.count(query.filter), query.skip, query.limit)
            with tqdm(total=total, unit="image", desc="exporting", disable=None) as bar:
                exporter = export.exporter(repository, get_file_store(), progress=bar)
                with open(partial, "wb") as archive:
                    for chunk in exporter.stream():
                        archive.write(chunk)
            os.replace(partial, target)
        except ImageStoreError as error:
            raise CommandError(error.detail) from None
        finally:
            partial.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        size = target.stat().st_size
        self.stdout.write(
            f"Exported {exporter.exported} images ({exporter.missing} with a missing file) "
            f"to {target}: {size / 1e6:.1f} MB in {seconds:.1f} s"
        )


def _expected_count(matching: int, skip: int, limit: int) -> int:
    remaining = max(0, matching - skip)
    return min(remaining, limit) if limit else remaining
