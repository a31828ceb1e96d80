"""Thumbnails of huge pictures in small files keep the workers' memory bounded.

Two PNGs of 8000x8000 flat pixels (~200 KB each, under the upload pixel limit) and 8
concurrent thumbnail requests of different sizes against a `serve` subprocess with 2 workers of
4 threads. A whole decode is 192 MiB per render (about 1 GiB per worker at 4 at once); shrinking
while decoding, two renders per process, must stay far below. A progressive JPEG cannot be
streamed: the memory budget must run its renders one after another. Memory is each worker's
VmHWM growth over its idle RSS, and its RSS afterwards, read from /proc/<pid>/status.
"""

from __future__ import annotations

import io
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from benchmarks.processes import MIB, children, peak_rss_bytes, reset_peak_rss, rss_bytes
from testing.harness import ServeProcess

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses

SIDE = 8000
JPEG_MAGIC = b"\xff\xd8"
# Per worker, over idle: two renders at a time of ~50 MiB each, plus the interpreter's slack.
MAX_GROWTH_MIB = 200
# What a worker keeps afterwards: libvips' code, not the pictures' pixels.
MAX_KEPT_MIB = 100
# One whole decode of ~190 MiB at a time (four at once would be ~750 MiB).
MAX_WHOLE_DECODE_GROWTH_MIB = 300


def flat_png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), colour).save(buffer, "PNG")
    return buffer.getvalue()


def progressive_jpeg() -> bytes:
    """A progressive JPEG must be decoded whole (every coefficient kept): ~190 MiB at 64 MP."""
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (30, 160, 30)).save(buffer, "JPEG", progressive=True)
    return buffer.getvalue()


def serve(tmp_path, mongodb_uri, workers: int) -> ServeProcess:
    database = mongodb_uri.rsplit("/", 1)[0] + f"/thumbs_{uuid.uuid4().hex[:8]}"
    env = {
        "MONGODB_CONNECTION_STRING": database,
        "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
        "DATA_DIRECTORY": str(tmp_path / "data"),
        "GUNICORN_THREADS": "4",
    }
    return ServeProcess(env, tmp_path, workers=workers).start()


def peak_growth_of_thumbnails(service: ServeProcess, pictures: list[bytes], sizes) -> dict:
    """Upload the pictures, then ask for every size of each at once.

    Per worker, in MiB over its idle RSS: the peak during the requests and the RSS after them.
    """
    base = service.url
    ids = []
    for index, content in enumerate(pictures):
        assert len(content) < 400_000
        extension = "jpg" if content.startswith(JPEG_MAGIC) else "png"
        name = f"huge{index}.{extension}"
        response = requests.post(f"{base}/images", files={"image": (name, content)}, timeout=60)
        assert response.status_code == 200, response.content
        ids.append(response.json()["_id"])
    workers = children(service.pid)
    requests.get(f"{base}/images", timeout=30)
    idle = {pid: rss_bytes(pid) for pid in workers}
    for pid in workers:
        reset_peak_rss(pid)
    routes = [f"/images/{i}/thumbnail?size={s}" for i in ids for s in sizes]
    with ThreadPoolExecutor(len(routes)) as pool:
        answers = list(pool.map(lambda r: requests.get(base + r, timeout=300), routes))
    assert [a.status_code for a in answers] == [200] * len(routes), [
        a.content[:200] for a in answers
    ]
    assert all(max(Image.open(io.BytesIO(a.content)).size) in sizes for a in answers)
    return {
        pid: ((peak_rss_bytes(pid) - idle[pid]) / MIB, (rss_bytes(pid) - idle[pid]) / MIB)
        for pid in workers
    }


def test_eight_concurrent_thumbnails_of_huge_pngs_stay_bounded(tmp_path, mongodb_uri):
    service = serve(tmp_path, mongodb_uri, workers=2)
    try:
        pictures = [flat_png((200, 30, 30)), flat_png((30, 30, 200))]
        growth = peak_growth_of_thumbnails(service, pictures, (64, 128, 256, 512))
    finally:
        service.stop()
    print(f"peak growth per worker (MiB): {growth}")
    assert len(growth) == 2
    assert all(peak < MAX_GROWTH_MIB for peak, _ in growth.values()), growth
    assert all(kept < MAX_KEPT_MIB for _, kept in growth.values()), growth


def test_pictures_decoded_whole_are_rendered_within_the_memory_budget(tmp_path, mongodb_uri):
    """4 at once of a picture needing ~190 MiB: the 320 MiB budget lets one run at a time."""
    service = serve(tmp_path, mongodb_uri, workers=1)
    try:
        growth = peak_growth_of_thumbnails(service, [progressive_jpeg()], (64, 128, 256, 512))
    finally:
        service.stop()
    print(f"peak growth per worker (MiB): {growth}")
    assert all(peak < MAX_WHOLE_DECODE_GROWTH_MIB for peak, _ in growth.values()), growth
    assert all(kept < MAX_KEPT_MIB for _, kept in growth.values()), growth
