"""`python -m benchmarks.archives [--images N] [--size-kb K] [--formats F,...]`: export and
import over HTTP.

Starts a fresh database and `manage.py serve` (benchmarks.service, local disk), seeds N
images of about K KB through `POST /images` (32 distinct files, so most bytes are stored many
times), then times `GET /export` in each format (streamed to a file), pages through
`GET /images/duplicates` and, after deleting everything, `POST /import` of the zip. Prints wall time, MB/s and the
growth of the service's peak RSS over idle (VmHWM of the gunicorn master and workers, each reset
before the measured request, summed: VmHWM is per process). It asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.processes import MIB, ProcessGroup
from benchmarks.service import BenchService, ServerOptions

POOL = 32


@dataclass
class Figures:
    label: str
    seconds: float
    size: int
    idle_rss: int
    peak_rss: int
    first_byte: float | None = None

    def row(self) -> str:
        throughput = self.size / 1e6 / self.seconds
        growth = (self.peak_rss - self.idle_rss) / MIB
        first = f"{self.first_byte * 1000:8.0f}" if self.first_byte is not None else "       -"
        return (
            f"{self.label:<18} {self.seconds:8.2f} {self.size / 1e6:9.1f} {throughput:8.1f} "
            f"{first} {self.idle_rss / MIB:9.1f} {self.peak_rss / MIB:9.1f} {growth:8.1f}"
        )


HEADER = (
    f"{'':<18} {'wall s':>8} {'MB':>9} {'MB/s':>8} {'1st ms':>8} "
    f"{'idle MiB':>9} {'peak MiB':>9} {'grow MiB':>8}"
)


def image_pool(size_kb: int) -> list[bytes]:
    """Incompressible PNGs of about `size_kb` KB (random pixels)."""
    side = max(8, int(math.sqrt(size_kb * 1024 / 3)))
    pool = []
    for _ in range(POOL):
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
        pool.append(buffer.getvalue())
    return pool


def seed(client: httpx.Client, count: int, size_kb: int) -> None:
    pool = image_pool(size_kb)

    def one(index: int) -> None:
        data = {"camera": f"cam{index % 4}", "n": index, "nested": {"batch": index // 1000}}
        response = client.post(
            "/images",
            files={"image": (f"img_{index:06d}.png", pool[index % POOL], "image/png")},
            data={
                "file": f"seed/{index // 1000:03d}/img_{index:06d}.png",
                "json": json.dumps(data),
            },
        )
        response.raise_for_status()

    with ThreadPoolExecutor(max_workers=4) as pool_executor:
        list(pool_executor.map(one, range(count)))


def settle(memory: ProcessGroup) -> int:
    """Let the disk finish the previous step's writes and deletes, then reset the peaks."""
    os.sync()
    time.sleep(2.0)
    memory.reset_peak_rss()
    return memory.rss_bytes()


def measure_export(
    client: httpx.Client, memory: ProcessGroup, target: Path, export_format: str = "zip"
) -> Figures:
    idle = settle(memory)
    started = time.perf_counter()
    first_byte = None
    url = f"/export?format={export_format}"
    with client.stream("GET", url) as response, open(target, "wb") as out:
        response.raise_for_status()
        for chunk in response.iter_raw(1024 * 1024):
            if first_byte is None:
                first_byte = time.perf_counter() - started
            out.write(chunk)
    seconds = time.perf_counter() - started
    label = f"export {export_format}"
    return Figures(label, seconds, target.stat().st_size, idle, memory.peak_rss_bytes(), first_byte)


def measure_duplicates(client: httpx.Client, memory: ProcessGroup) -> tuple[Figures, int]:
    """Every page of GET /images/duplicates; the figures and the number of groups."""
    idle = settle(memory)
    started = time.perf_counter()
    groups, size, after = 0, 0, ""
    while True:
        response = client.get("/images/duplicates", params={"limit": 100, "after": after})
        response.raise_for_status()
        size += len(response.content)
        page = response.json()
        groups += len(page["items"])
        if page["next"] is None:
            break
        after = page["next"]
    seconds = time.perf_counter() - started
    return Figures("duplicates", seconds, size, idle, memory.peak_rss_bytes()), groups


def measure_import(
    client: httpx.Client, memory: ProcessGroup, archive: Path, expected: int
) -> Figures:
    idle = settle(memory)
    started = time.perf_counter()
    with open(archive, "rb") as source:
        response = client.post(
            "/import", files={"archive": (archive.name, source, "application/zip")}
        )
    seconds = time.perf_counter() - started
    response.raise_for_status()
    body = response.json()
    if body["imported"] != expected or body["skipped"]:
        raise RuntimeError(f"import went wrong: {str(body)[:500]}")
    return Figures("import", seconds, archive.stat().st_size, idle, memory.peak_rss_bytes())


def run(images: int, size_kb: int, workers: int, formats: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="imagestore-bench-") as workdir:
        service = BenchService(Path(workdir), ServerOptions(workers=workers))
        service.start()
        try:
            client = httpx.Client(base_url=service.url, timeout=600)
            started = time.perf_counter()
            seed(client, images, size_kb)
            print(
                f"seeded {images} images of ~{size_kb} KB in {time.perf_counter() - started:.1f} s"
            )
            memory = service.service_group()
            archive = Path(workdir) / "export.zip"
            exports = [measure_export(client, memory, archive)]
            for export_format in formats:
                target = Path(workdir) / f"export-{export_format}"
                exports.append(measure_export(client, memory, target, export_format))
                target.unlink()
            duplicates, groups = measure_duplicates(client, memory)
            client.delete("/images", params={"all": "true"}).raise_for_status()
            imported = measure_import(client, memory, archive, images)
            print(f"{images} images x {size_kb} KB, {workers} workers (pids {memory.pids})")
            print(HEADER)
            for figures in [*exports, imported, duplicates]:
                print(figures.row())
            print(f"duplicates: {groups} groups")
        finally:
            service.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size-kb", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--formats",
        default="webdataset,imagefolder,jsonl",
        help="export formats timed after the zip (comma-separated; empty for none)",
    )
    arguments = parser.parse_args(argv)
    formats = [name for name in arguments.formats.split(",") if name]
    run(arguments.images, arguments.size_kb, arguments.workers, formats)


if __name__ == "__main__":
    main()
