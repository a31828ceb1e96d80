"""`python manage.py backfill_facts`: image facts for documents stored without them.

Documents imported or written before facts existed have no `sha256`, `size`, `width`...
Each one's file is read once, as a stream (hashed while read, header parsed by Pillow), and
the facts are stored beside `file`. Documents are taken in pages by `_id`, so the command
works on any number of images and can be interrupted and run again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand
from tqdm import tqdm

from images.core.facts import facts_of_chunks
from images.core.query import ImageQuery
from images.store.files import FileStore, get_file_store, is_storable_key
from images.store.repository import ImageRepository
from images.thumbnails import delete_thumbnails

MISSING_FACTS = {"sha256": {"$exists": False}}


class Command(BaseCommand):
    help = "Compute and store image facts (size, sha256, width, height...) where they are missing."

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
    facts, is_image = facts_of_chunks(files.read_chunks(key), key)
    if not repository.set_facts(document["_id"], facts):
        return "deleted"
    # Thumbnails made before the facts were keyed by id; from now on they are keyed by sha256.
    delete_thumbnails(files, document)
    return "image" if is_image else "not an image"


def _summary(total: int, outcomes: Counter[str]) -> str:
    done = outcomes["image"] + outcomes["not an image"]
    parts = [
        f"{done} of {total} documents updated",
        f"{outcomes['image']} images",
        f"{outcomes['not an image']} files that are not readable images (size and sha256 only)",
        f"{outcomes['missing']} with a missing or unsafe file (left as they were)",
    ]
    if outcomes["deleted"]:
        parts.append(f"{outcomes['deleted']} deleted while running")
    return "; ".join(parts) + "."
