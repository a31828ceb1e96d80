"""`python -m benchmarks.thumbnail_load [--side 9400] [--root CHECKOUT]`: huge thumbnails over HTTP.

The attack on thumbnails, measured: two flat PNGs of `--side`² pixels (a few hundred KB each,
under the upload pixel limit) uploaded to a fresh `manage.py serve` (2 workers, 4 threads),
then 8 concurrent thumbnail requests (both images, 4 sizes) while `/health/live` is polled.
Prints the wall time, each worker's peak RSS growth over idle (VmHWM) and RSS afterwards, and
the slowest `/health/live`. `--root` measures another checkout of imagestore (e.g. an older
one, for before/after). It asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.processes import (
    MIB,
    children,
    load_average,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)
from benchmarks.service import REPO_ROOT, BenchService, ServerOptions

SIZES = (64, 128, 256, 512)


def flat_png(side: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, "PNG")
    return buffer.getvalue()


class LivenessProbe:
    """Polls /health/live in a thread; keeps the slowest answer."""

    def __init__(self, base: str) -> None:
        self.base, self.slowest, self.done = base, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                client.get(f"{self.base}/health/live")
                self.slowest = max(self.slowest, time.perf_counter() - started)
                time.sleep(0.05)

    def __enter__(self) -> LivenessProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        self.thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=9400)
    parser.add_argument("--root", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        service = BenchService(Path(folder), ServerOptions(workers=2, threads=4), root=args.root)
        service.start()
        try:
            run(service, args.side)
        finally:
            service.stop()


def run(service: BenchService, side: int) -> None:
    base = service.url
    ids = []
    for index, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        content = flat_png(side, colour)
        answer = httpx.post(
            f"{base}/images", files={"image": (f"huge{index}.png", content)}, timeout=120
        )
        answer.raise_for_status()
        ids.append(answer.json()["_id"])
    workers = children(service.process.pid)
    idle = {pid: rss_bytes(pid) for pid in workers}
    for pid in workers:
        reset_peak_rss(pid)
    routes = [f"{base}/images/{i}/thumbnail?size={s}" for i in ids for s in SIZES]
    started = time.perf_counter()
    with LivenessProbe(base) as probe, ThreadPoolExecutor(len(routes)) as pool:
        statuses = list(pool.map(lambda r: httpx.get(r, timeout=600).status_code, routes))
    seconds = time.perf_counter() - started
    print(f"{side}x{side} PNGs ({len(content) // 1024} KB), {len(routes)} concurrent thumbnails")
    print(f"checkout {service.root}, load {load_average()}")
    print(f"statuses {sorted(set(statuses))}, {seconds:.2f} s, slowest /health/live "
          f"{probe.slowest:.2f} s")  # fmt: skip
    for pid in workers:
        growth = (peak_rss_bytes(pid) - idle[pid]) / MIB
        after = (rss_bytes(pid) - idle[pid]) / MIB
        print(f"worker {pid}: peak +{growth:.0f} MiB, afterwards +{after:.0f} MiB")


if __name__ == "__main__":
    main()
