"""Lists and exports of large documents keep a worker's memory bounded, and give it back.

256 documents of ~1 MB of `data` (written straight to MongoDB), each with a file of 256 KiB,
behind a `serve` subprocess of one worker. Each list or export is read whole, or stalled first
(its first bytes read, then left until the worker's memory stops moving) as a slow client
leaves it. Memory is the worker's VmHWM growth over its RSS before the request, and its RSS
once the request is over, read from /proc/<pid>/status.

Before the fix (documents held by count): `limit=1000` +500 MiB, kept afterwards; `limit=0`
+810 MiB; three stalled lists +2.1 GiB, 1.1 GiB kept; each export format read 256 documents
ahead of a stalled reader, +230 to +250 MiB.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient

from benchmarks.processes import MIB, children, peak_rss_bytes, reset_peak_rss, rss_bytes
from testing.harness import ServeProcess

pytestmark = pytest.mark.slow  # a `serve` subprocess and 256 MB of documents

DOCUMENTS = 256
# ~1 MB of `data` each: under MAX_DATA_SIZE (1 MiB), as an upload could store it.
VALUE = ("abcdefghijklmnopqrstuvwxyz" * 40_000)[:1_000_000]
# Over the worker's RSS before the request: a few batches, the budget and the output chunks.
MAX_GROWTH_MIB = 150
# The worker's whole RSS at its peak (the target).
MAX_PEAK_MIB = 300
# What the worker keeps once the request is over.
MAX_KEPT_MIB = 40
CHUNK = 64 * 1024
# Each image's bytes: enough that an export stalls on its reader while it writes the images
# (64 MiB in all), not only once it writes mongodb_data.json.
FILE_SIZE = 256 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory, mongodb_uri) -> Iterator[tuple[str, int]]:
    workdir = tmp_path_factory.mktemp("large-documents")
    database = mongodb_uri.rsplit("/", 1)[0] + f"/large_{uuid.uuid4().hex[:8]}"
    uploads = workdir / "uploads"
    client = MongoClient(database)
    collection = client.get_default_database()["images"]
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for first in range(0, DOCUMENTS, 16):
        batch = []
        for index in range(first, first + 16):
            file = f"large/{index:03d}.bin"
            (uploads / file).parent.mkdir(parents=True, exist_ok=True)
            (uploads / file).write_bytes(bytes([index]) * FILE_SIZE)
            data = {"label": "cat" if index % 2 else "dog", "value": VALUE}
            batch.append(
                {"_id": ObjectId(), "file": file, "userId": None, "time": moment, "data": data}
            )
        collection.insert_many(batch)
    env = {
        "MONGODB_CONNECTION_STRING": database,
        "UPLOADS_DIRECTORY": str(uploads),
        "DATA_DIRECTORY": str(workdir / "data"),
        "ALLOW_NON_IMAGES": "true",
    }
    service = ServeProcess(env, workdir, workers=1).start()
    try:
        # Warm up: the first requests import what the routes need (openpyxl for the zip).
        requests.get(f"{service.url}/images", params={"limit": 1}, timeout=60)
        for name in ("zip", "jsonl", "webdataset", "imagefolder"):
            params = {"format": name, "limit": 1}
            assert requests.get(f"{service.url}/export", params=params, timeout=60).ok
        yield service.url, service.pid
    finally:
        service.stop()
        client.drop_database(collection.database.name)
        client.close()


def settled_rss(pid: int) -> int:
    """The worker's RSS once it stops moving (the answer's last bytes may still be going)."""
    last = rss_bytes(pid)
    for _ in range(50):
        time.sleep(0.2)
        now = rss_bytes(pid)
        if abs(now - last) < MIB:
            return now
        last = now
    return last


class Measured:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = settled_rss(pid)
        reset_peak_rss(pid)

    def check(self, what: str) -> None:
        peak = peak_rss_bytes(self.pid)
        kept = settled_rss(self.pid)
        growth, after = (peak - self.before) / MIB, (kept - self.before) / MIB
        print(
            f"{what}: before {self.before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB "
            f"(+{growth:.0f}), after {kept / MIB:.0f} MiB (+{after:.0f})"
        )
        assert growth < MAX_GROWTH_MIB, f"{what}: the worker grew by {growth:.0f} MiB"
        assert peak < MAX_PEAK_MIB * MIB, f"{what}: the worker reached {peak / MIB:.0f} MiB"
        assert after < MAX_KEPT_MIB, f"{what}: the worker kept {after:.0f} MiB"


def opened(base: str, path: str, params: dict) -> tuple[requests.Response, Iterator[bytes]]:
    response = requests.get(base + path, params=params, stream=True, timeout=300)
    assert response.status_code == 200, response.content[:300]
    return response, response.iter_content(CHUNK)


def stalled(pid: int, chunks: list[Iterator[bytes]]) -> list[bytearray]:
    """Read the first bytes of each answer, leave them until the worker's memory stops moving,
    then read them to the end at once."""
    bodies = [bytearray(next(chunk)) for chunk in chunks]
    settled_rss(pid)
    threads = [
        threading.Thread(target=lambda b=body, c=chunk: [b.extend(x) for x in c])
        for body, chunk in zip(bodies, chunks, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return bodies


def check_list(body: bytes, limit: int) -> None:
    assert body.startswith(b'{"total":%d,"skip":0,"limit":%d,"items":[' % (DOCUMENTS, limit))
    assert body.endswith(b"]}")
    assert body.count(b'"file":"large/') == DOCUMENTS


@pytest.mark.parametrize("limit", [1000, 0])
def test_a_list_of_large_documents_stays_bounded(served, limit):
    base, master = served
    (worker,) = children(master)
    measured = Measured(worker)
    _, chunks = opened(base, "/images", {"limit": limit})
    check_list(b"".join(chunks), limit)
    measured.check(f"limit={limit}")


def test_three_stalled_lists_stay_bounded(served):
    base, master = served
    (worker,) = children(master)
    measured = Measured(worker)
    answers = [opened(base, "/images", {"limit": limit}) for limit in (0, 0, 1000)]
    bodies = stalled(worker, [chunks for _, chunks in answers])
    for body, limit in zip(bodies, (0, 0, 1000), strict=True):
        check_list(bytes(body), limit)
    measured.check("three stalled lists")


@pytest.mark.parametrize("name", ["zip", "jsonl", "webdataset", "imagefolder"])
def test_an_export_read_slowly_stays_bounded(served, name):
    base, master = served
    (worker,) = children(master)
    measured = Measured(worker)
    _, chunks = opened(base, "/export", {"format": name})
    (body,) = stalled(worker, [chunks])
    if name == "jsonl":
        assert body.count(b"\n") == DOCUMENTS
    assert len(body) > 1024
    measured.check(f"export {name}")
