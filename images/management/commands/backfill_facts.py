"""`python manage.py backfill_facts`: image facts for documents stored without them.

Documents imported or written before facts existed have no `sha256`, `size`, `width`...,
and pictures stored before perceptual hashes have no `phash`. Each one's file is read once, as
a stream (hashed while read, header parsed by Pillow; kept in a temporary file when it is not
on local disk, for the perceptual hash to decode), and the facts are stored beside `file`.
Documents are taken in pages by `_id`, so the command works on any number of images and can be
interrupted and run again.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

from django.core.management.base import BaseCommand
from tqdm import tqdm

from images.core.facts import facts_of_chunks
from images.core.query import ImageQuery
from images.duplicates.perceptual import perceptual_facts
from images.store.files import CHUNK_SIZE, FileStore, get_file_store, is_storable_key
from images.store.repository import ImageRepository
from images.thumbnails import delete_thumbnails

MISSING_FACTS = {
    "$or": [
        {"sha256": {"$exists": False}},
        {"format": {"$exists": True}, "phash": {"$exists": False}},  # a picture never hashed
    ]
}


class Command(BaseCommand):
    help = (
        "Compute and store image facts (size, sha256, width, height, perceptual hash...) where "
        "they are missing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--all", action="store_true", help="Recompute the facts of every document."
        )
        parser.add_argument("--page-size", type=int, default=500, help="Documents per query.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        repository = ImageRepository(owner=None)
        files = get_file_store()
        selection = {} if options["all"] else MISSING_FACTS
        total = repository.count(selection)
        query = ImageQuery(filter=selection, limit=0, projection={"file": 1, "sha256": 1})
        outcomes: Counter[str] = Counter()
        documents = repository.find_in_pages(query, page_size=max(1, options["page_size"]))
        with tqdm(
            total=total, unit="image", disable=options["no_progress"], file=self.stderr._out
        ) as progress:
            for document in documents:
                outcomes[backfill_one(repository, files, document)] += 1
                progress.update(1)
        self.stdout.write(_summary(total, outcomes))


def backfill_one(repository: ImageRepository, files: FileStore, document: dict[str, Any]) -> str:
    """Store the facts of one document's file; returns what happened."""
    key = document.get("file")
    if not is_storable_key(key) or files.stat(key) is None:
        return "missing"
    with _readable(files, key) as (chunks, source):
        facts, is_image = facts_of_chunks(chunks, key)
        if is_image:
            facts.update(perceptual_facts(source))
    if not repository.set_facts(document["_id"], facts):
        return "deleted"
    # Thumbnails made before the facts were keyed by id; from now on they are keyed by sha256.
    delete_thumbnails(files, document)
    if not is_image:
        return "not an image"
    return "image" if "phash" in facts else "image without perceptual hash"


@contextlib.contextmanager
def _readable(files: FileStore, key: str) -> Iterator[tuple[Iterator[bytes], IO[bytes]]]:
    """The file's chunks to read once, and a real file holding them once they are read."""
    handle = files.open_file(key)
    if handle is not None:
        with handle:
            yield iter(functools.partial(handle.read, CHUNK_SIZE), b""), handle
        return
    with tempfile.TemporaryFile() as copy:

        def copied() -> Iterator[bytes]:
            for chunk in files.read_chunks(key):
                copy.write(chunk)
                yield chunk

        yield copied(), copy


def _summary(total: int, outcomes: Counter[str]) -> str:
    done = outcomes["image"] + outcomes["image without perceptual hash"] + outcomes["not an image"]
    parts = [
        f"{done} of {total} documents updated",
        f"{outcomes['image']} images",
        f"{outcomes['image without perceptual hash']} pictures too large or broken to give a "
        "perceptual hash",
        f"{outcomes['not an image']} files that are not readable images (size and sha256 only)",
        f"{outcomes['missing']} with a missing or unsafe file (left as they were)",
    ]
    if outcomes["deleted"]:
        parts.append(f"{outcomes['deleted']} deleted while running")
    return "; ".join(parts) + "."
