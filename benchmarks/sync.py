"""`python -m benchmarks.sync [N ...]`: an incremental `pull --sync` of 10 changes against a
full pull, in a dataset of N images (default 10,000).

One imagestore on a replica set of one member; the images are seeded straight through PyMongo
(documents) and the file system (one small PNG each), then mirrored by a first sync. Measured:
the first (full) sync into an empty folder, a plain full pull into the synced folder (every
file listed and hash-checked, none downloaded), and, after 10 changes by another client (4
uploads, 3 metadata PATCHes, 1 re-upload, 2 deletes), the incremental sync.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.service import BenchService, bench_database
from imagestore_client import Client
from imagestore_client.pull import Puller
from imagestore_client.sync import Syncer

SIZES = (10_000,)


def png(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (index % 256, index // 256 % 256, 7)).save(buffer, "PNG")
    return buffer.getvalue()


def seed(service: BenchService, count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = []
    for index in range(count):
        content, file = png(index), f"cam{index % 20:02d}/{index:06d}.png"
        path = service.uploads / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        facts = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        facts |= {"width": 32, "height": 24, "format": "PNG", "mode": "RGB"}
        rows.append({"file": file, "userId": None, "data": {"n": index}, "time": now, **facts})
        rows[-1]["contentType"] = "image/png"
    with service.mongo() as mongo:
        mongo.get_default_database()["images"].insert_many(rows)


def ten_changes(api: Client) -> None:
    listed = list(api.find(limit=6))
    for index in range(4):
        api.upload(png(900_000 + index), f"new/{index}.png", {"n": -index})
    for document in listed[:3]:
        api.update(document["_id"], {"label": "cat"})
    api.upload(png(800_000), listed[3]["file"], listed[3]["data"])
    api.delete(listed[4]["_id"])
    api.delete(listed[5]["_id"])


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure(count: int, workdir: Path) -> str:
    database = bench_database(workdir, replica_set="rs0")
    database.start()
    service = BenchService(workdir, database=database)
    try:
        service.start()
        seed(service, count)
        dest = workdir / "mirror"
        with Client(service.url) as api:
            first, _ = timed(lambda: Syncer(api, dest).run())
            again, _ = timed(lambda: Puller(api, dest, write_metadata=False).run(api.find()))
            ten_changes(api)
            step, summary = timed(lambda: Syncer(api, dest).run())
        assert summary.changes == 10 and not summary.failed, summary
        return (
            f"| {count:,} | {first:.1f} s | {again:.1f} s | {step * 1000:.0f} ms "
            f"({summary.downloaded} downloaded, {summary.removed} removed) |"
        )
    finally:
        service.stop()
        database.stop()


def main(arguments: list[str]) -> int:
    sizes = [int(size) for size in arguments] or list(SIZES)
    print("| images | first sync (full, empty folder) | full pull, all there | 10 changes |")
    print("|---|---|---|---|")
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix="imagestore-sync-") as workdir:
            print(measure(count, Path(workdir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
