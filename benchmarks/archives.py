"""`python -m benchmarks.archives [--images N] [--size-kb K]`: export and import over HTTP.

Starts `manage.py serve` on a fresh data directory (embedded database, local disk), seeds N
images of about K KB through `POST /images`, then times `GET /export` (streamed to a file) and,
after deleting everything, `POST /import` of that archive. Prints wall time, MB/s and the
growth of the service's peak RSS over idle (VmHWM of the gunicorn master and workers, each reset
before the measured request, summed: VmHWM is per process). It asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
POOL = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen:
    """`manage.py serve` with the embedded database, as tests/helpers.start_service does."""
    environment = {k: v for k, v in os.environ.items() if k != "MONGODB_CONNECTION_STRING"}
    environment.update({"APP_PORT": str(port), **env})
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "manage.py"), "serve", "--host", "127.0.0.1"],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the service did not start")


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def service_pids(master: int) -> list[int]:
    """The gunicorn master and its workers."""
    workers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == master and not is_database(entry):
            workers.append(int(entry))
    return [master, *sorted(workers)]


def is_database(pid: str) -> bool:
    """The embedded database `serve` started is its child too, but not part of gunicorn."""
    try:
        return b"secantusd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class Memory:
    pids: list[int]

    def reset_peaks(self) -> None:
        for pid in self.pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")

    def rss(self) -> int:
        return sum(status_kib(pid, "VmRSS") for pid in self.pids) * 1024

    def peak(self) -> int:
        return sum(status_kib(pid, "VmHWM") for pid in self.pids) * 1024


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
            f"{self.label:<7} {self.seconds:8.2f} {self.size / 1e6:9.1f} {throughput:8.1f} "
            f"{first} {self.idle_rss / MIB:9.1f} {self.peak_rss / MIB:9.1f} {growth:8.1f}"
        )


HEADER = (
    f"{'':<7} {'wall s':>8} {'MB':>9} {'MB/s':>8} {'1st ms':>8} "
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


def settle(memory: Memory) -> int:
    """Let the disk finish the previous step's writes and deletes, then reset the peaks."""
    os.sync()
    time.sleep(2.0)
    memory.reset_peaks()
    return memory.rss()


def measure_export(client: httpx.Client, memory: Memory, target: Path) -> Figures:
    idle = settle(memory)
    started = time.perf_counter()
    first_byte = None
    with client.stream("GET", "/export") as response, open(target, "wb") as out:
        response.raise_for_status()
        for chunk in response.iter_raw(1024 * 1024):
            if first_byte is None:
                first_byte = time.perf_counter() - started
            out.write(chunk)
    seconds = time.perf_counter() - started
    return Figures("export", seconds, target.stat().st_size, idle, memory.peak(), first_byte)


def measure_import(client: httpx.Client, memory: Memory, archive: Path, expected: int) -> Figures:
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
    return Figures("import", seconds, archive.stat().st_size, idle, memory.peak())


def drain(stream) -> None:
    """Keep reading the service's output so that a full pipe never blocks it."""
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def run(images: int, size_kb: int, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imagestore-bench-") as workdir:
        root = Path(workdir)
        port = free_port()
        environment = {
            "DATA_DIRECTORY": str(root / "data"),
            "UPLOADS_DIRECTORY": str(root / "uploads"),
            "WEB_CONCURRENCY": str(workers),
            "LOG_LEVEL": "WARNING",
            "IMAGE_SCOPE": "",
        }
        process = start_service(environment, root, port)
        drain(process.stdout)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
            started = time.perf_counter()
            seed(client, images, size_kb)
            print(
                f"seeded {images} images of ~{size_kb} KB in {time.perf_counter() - started:.1f} s"
            )
            memory = Memory(service_pids(process.pid))
            archive = root / "export.zip"
            exported = measure_export(client, memory, archive)
            client.delete("/images").raise_for_status()
            imported = measure_import(client, memory, archive, images)
            print(f"{images} images x {size_kb} KB, {workers} workers (pids {memory.pids})")
            print(HEADER)
            print(exported.row())
            print(imported.row())
        finally:
            process.terminate()
            process.wait(timeout=60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size-kb", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    arguments = parser.parse_args(argv)
    run(arguments.images, arguments.size_kb, arguments.workers)


if __name__ == "__main__":
    main()
