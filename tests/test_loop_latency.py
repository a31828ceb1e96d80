"""Heavy requests never freeze a gevent worker: `/health/live` keeps answering while they run.

Every request of a gevent worker shares one OS thread. Work that holds it (decompressing an
archive's entries, reading a TIFF's thousands of directories, building a spreadsheet, hashing
and copying big files) kept every other request of the worker waiting: a 13 MB bzip2 archive
froze its worker for 18 s, an xlsx of 25,000 documents for 78 s. One real `serve` (one gevent
worker) runs each kind of heavy work below while a probe polls `/health/live`; the probe's
slowest answer must stay under a functional bound (not a speed benchmark: the machine may be
busy).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import struct
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pymongo import MongoClient

from testing.harness import ServeProcess

pytestmark = pytest.mark.slow  # starts `manage.py serve` and makes hundreds of MB of work

# The slowest /health/live answer allowed while heavy work runs (before: seconds to minutes).
PROBE_BOUND_SECONDS = 1.0
PROBE_INTERVAL = 0.02
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per probe


class LivenessProbe:
    """Polls /health/live from a thread of its own; keeps every latency."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=300) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                client.get(f"{self.base}/health/live").raise_for_status()
                self.latencies.append(time.perf_counter() - started)
                time.sleep(PROBE_INTERVAL)

    @property
    def worst(self) -> float:
        return max(self.latencies)

    def __enter__(self) -> LivenessProbe:
        self.thread.start()
        time.sleep(0.3)  # a few answers before the work starts
        return self

    def __exit__(self, *exc_info: object) -> None:
        time.sleep(0.2)
        self.done.set()
        self.thread.join(timeout=600)


class Served:
    def __init__(self, process: ServeProcess, database_uri: str, uploads: Path) -> None:
        self.process = process
        self.url = process.url
        self.uploads = uploads
        self.database = MongoClient(database_uri).get_default_database()


@pytest.fixture(scope="module")
def served(tmp_path_factory, mongodb_uri) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("loop-latency")
    database_uri = f"{mongodb_uri.rsplit('/', 1)[0]}/loop_{uuid.uuid4().hex[:10]}"
    uploads = folder / "uploads"
    process = ServeProcess(
        {
            "MONGODB_CONNECTION_STRING": database_uri,
            "UPLOADS_DIRECTORY": str(uploads),
            "DATA_DIRECTORY": str(folder / "data"),
            "LOG_LEVEL": "WARNING",
            "ALLOW_NON_IMAGES": "true",  # entries that are no picture: no decoding at all
        },
        folder,
        workers=1,
        log_path=folder / "serve.log",
    ).start()
    service = Served(process, database_uri, uploads)
    try:
        yield service
    finally:
        process.stop(timeout=60)
        service.database.client.drop_database(service.database.name)
        service.database.client.close()


# --- what the heavy work is made of ------------------------------------------------------------
def low_entropy(size: int) -> bytes:
    """Bytes of 4 values: bzip2 and deflate shrink them about 4 times (within the archive
    ratio limit), and take their time to expand them again."""
    return os.urandom(size).translate(bytes(i % 4 * 60 for i in range(256)))


def bmp(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), low_entropy(width * height * 3)).save(buffer, "BMP")
    return buffer.getvalue()


def many_page_tiff(pages: int, side: int = 64) -> bytes:
    """A little-endian TIFF: a `side`² grey first page, then `pages - 1` pages of one pixel.
    Its header is small, but libvips reads every page's directory to count them."""
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    first_pixels = len(out)
    out += bytes(i * 7 % 256 for i in range(side * side))
    one_pixel = len(out)
    out += b"\x80\x00"
    struct.pack_into("<I", out, 4, len(out))
    for page in range(pages):
        size, data = (side, first_pixels) if page == 0 else (1, one_pixel)
        tags = [
            (256, size), (257, size), (258, 8), (259, 1), (262, 1),
            (273, data), (277, 1), (278, size), (279, size * size),
        ]  # fmt: skip
        ifd = struct.pack("<H", len(tags))
        for tag, value in tags:
            ifd += struct.pack("<HHII", tag, 4, 1, value)  # every value a LONG
        following = len(out) + len(ifd) + 4 if page < pages - 1 else 0
        out += ifd + struct.pack("<I", following)
    return bytes(out)


def archive(path: Path, entries: dict[str, bytes], method: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=1) as out:
        for name, content in entries.items():
            out.writestr(name, content)
    return path


def store_directly(served: Served, documents: list[dict], files: dict[str, bytes]) -> None:
    """Files in the uploads directory and their documents in the database, without requests."""
    for key, content in files.items():
        target = served.uploads / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    served.database.images.insert_many(documents)


def document(file: str, data: dict) -> dict:
    return {"file": file, "userId": None, "data": data, "time": dt.datetime.now(dt.UTC)}


# --- the heavy work, each prepared (untimed) and then run while the probe polls -----------------
Work = Callable[[], None]


def import_bzip2(served: Served, folder: Path) -> Work:
    """Big entries, bzip2-compressed: expanding them held the loop about 0.05 s per MB (all
    of it for entries that are no picture, whose facts need no decoding off the loop)."""
    entries = {
        "bz/picture.bmp": bmp(2600, 2600),
        **{f"bz/{i}.bin": low_entropy(20 * 1024 * 1024) for i in range(2)},
    }
    path = archive(folder / "big-entries.zip", entries, zipfile.ZIP_BZIP2)
    return lambda: post_archive(served, path, expected=3)


def import_deflate(served: Served, folder: Path) -> Work:
    """Hundreds of entries, deflated: the loop was held for a whole batch of 500."""
    entries = {f"deflate/{i}.bin": low_entropy(120 * 1024) for i in range(450)}
    path = archive(folder / "entries.zip", entries, zipfile.ZIP_DEFLATED)
    return lambda: post_archive(served, path, expected=450)


def post_archive(served: Served, path: Path, expected: int) -> None:
    with path.open("rb") as content:
        answer = httpx.post(
            f"{served.url}/import", files={"archive": (path.name, content)}, timeout=600
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == expected, answer.text


def xlsx_export(served: Served, folder: Path) -> Work:
    """mongodb_data.xlsx of many documents with many keys (no files: the sheet is the work)."""
    keys = [f"key{k}" for k in range(100)]
    documents = [
        document(f"sheet/{i}.jpg", {"kind": "sheet", **{k: f"v{i}-{k}" for k in keys}})
        for i in range(600)
    ]
    store_directly(served, documents, {})
    return lambda: export(
        served, {"kind": "sheet"}, expected_entries=3
    )  # manifests and missing.json


def zip_export(served: Served, folder: Path) -> Work:
    """An archive of thousands of stored files, read by a client as fast as the loopback allows:
    the socket never made the export wait, so nothing else did either."""
    files = {f"many/{i}.bin": os.urandom(16 * 1024) for i in range(6000)}
    documents = [document(key, {"kind": "many"}) for key in files]
    store_directly(served, documents, files)
    return lambda: export(served, {"kind": "many"}, expected_entries=6000 + 2)


def export(served: Served, query: dict[str, str], expected_entries: int) -> None:
    target = io.BytesIO()
    with httpx.stream("GET", f"{served.url}/export", params=query, timeout=600) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_bytes():
            target.write(chunk)
    with zipfile.ZipFile(target) as exported:
        assert len(exported.infolist()) == expected_entries


def tiff_thumbnail(served: Served, folder: Path) -> Work:
    """A TIFF of 50,000 pages: libvips reads every directory to learn its header."""
    content = many_page_tiff(50_000)
    answer = httpx.post(
        f"{served.url}/images", files={"image": ("pages.tif", content)}, timeout=600
    )
    assert answer.is_success, answer.text
    image_id = answer.json()["_id"]

    def thumbnail() -> None:
        got = httpx.get(f"{served.url}/images/{image_id}/thumbnail?size=64", timeout=600)
        assert got.status_code == 200, got.text

    return thumbnail


def big_upload(served: Served, folder: Path) -> Work:
    """One upload near the size limit: its body parsed and hashed, the picture inspected, its
    file fsynced."""
    content = bmp(5400, 5400)  # 87 MB

    def post() -> None:
        answer = httpx.post(
            f"{served.url}/images", files={"image": ("big.bmp", content)}, timeout=600
        )
        assert answer.is_success, answer.text

    return post


def imports_at_once(served: Served, folder: Path) -> Work:
    """Four imports of deflated entries at the same time."""
    paths = [
        archive(
            folder / f"at-once-{n}.zip",
            {f"at-once/{n}/{i}.bin": low_entropy(100 * 1024) for i in range(450)},
            zipfile.ZIP_DEFLATED,
        )
        for n in range(4)
    ]

    def run() -> None:
        with ThreadPoolExecutor(len(paths)) as pool:
            list(pool.map(lambda path: post_archive(served, path, expected=450), paths))

    return run


WORK = {
    "import-bzip2": import_bzip2,
    "import-deflate": import_deflate,
    "xlsx-export": xlsx_export,
    "zip-export": zip_export,
    "tiff-thumbnail": tiff_thumbnail,
    "upload": big_upload,
    "imports-at-once": imports_at_once,
}


@pytest.mark.parametrize("kind", list(WORK))
def test_the_worker_answers_while_heavy_work_runs(served, tmp_path, kind):
    work = WORK[kind](served, tmp_path)
    started = time.perf_counter()
    with LivenessProbe(served.url) as probe:
        work()
    seconds = time.perf_counter() - started
    print(f"{kind}: {seconds:.1f} s, {len(probe.latencies)} probes, worst {probe.worst:.3f} s")
    assert probe.worst < PROBE_BOUND_SECONDS, (
        f"/health/live waited {probe.worst:.2f} s while {kind} ran ({seconds:.1f} s)"
    )
