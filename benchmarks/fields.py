"""`python -m benchmarks.fields [--documents N]`: what `GET /fields` costs on a large store.

Seeds a fresh mongod with N documents (default 200,000; a rare key only in the oldest
ones), then times the key listing imagestore runs (the newest FIELDS_SAMPLE_SIZE documents over
the `_id` index) next to a scan of every document and the original's `$sample` of 100,000.
Prints seconds per call and the keys each found; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import django
from pymongo.errors import PyMongoError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")

from benchmarks.processes import load_average
from benchmarks.service import bench_database

BATCH = 5_000


def seed(collection, documents: int) -> None:
    for start in range(0, documents, BATCH):
        batch = []
        for index in range(start, min(start + BATCH, documents)):
            data = {"camera": f"cam{index % 7}", "label": "ok", "score": index % 5}
            if index < 10:
                data["rare"] = "only in the oldest images"
            batch.append({"file": f"f/{index:07d}.jpg", "userId": None, "data": data})
        collection.insert_many(batch, ordered=False)


def keys_pipeline(head: list[dict]) -> list[dict]:
    return [
        *head,
        {"$project": {"keys": {"$objectToArray": {"$ifNull": ["$data", {}]}}}},
        {"$unwind": "$keys"},
        {"$group": {"_id": "$keys.k"}},
        {"$sort": {"_id": 1}},
    ]


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        database = bench_database(Path(workdir))
        database.start()
        try:
            os.environ["MONGODB_CONNECTION_STRING"] = database.uri("imagestore_fields")
            django.setup()
            from django.conf import settings

            from images.store.repository import ImageRepository, get_collection

            collection = get_collection()
            seconds, _ = timed(lambda: seed(collection, args.documents))
            print(f"seeded {args.documents} documents in {seconds:.1f} s; load {load_average()}")
            repository = ImageRepository()
            sample = settings.FIELDS_SAMPLE_SIZE
            runs = {
                f"imagestore: newest {sample} by _id": lambda: repository.field_names(sample),
                "every document": lambda: [
                    row["_id"] for row in collection.aggregate(keys_pipeline([]))
                ],
                "the original: $sample 100000": lambda: [
                    row["_id"]
                    for row in collection.aggregate(keys_pipeline([{"$sample": {"size": 100_000}}]))
                ],
            }
            for name, run in runs.items():
                started = time.perf_counter()
                try:
                    seconds, keys = timed(run)
                except PyMongoError as error:
                    seconds, keys = time.perf_counter() - started, f"failed: {error!r}"
                print(f"{name:38} {seconds:7.2f} s  keys={keys}")
        finally:
            database.stop()


if __name__ == "__main__":
    main()
