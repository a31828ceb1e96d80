"""`python -m benchmarks.client_transfer [--images N] [--size-kb K] [--jobs 1,8]`: push and pull.

Starts a fresh database and `manage.py serve` (benchmarks.service, local disk), writes N
distinct JPEGs of about K KB into a folder tree with a sidecar beside every other one, then for
each `--jobs` value times the `imagestore` command as a user runs it: `push` into an empty
service, `push` again (everything skipped), `pull` into an empty folder and `pull` again
(everything skipped). Prints images/s per run, the CPU the command, the service and the
database spent per image, and the load average around the run (all three share the machine).
It asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.processes import load_average
from benchmarks.service import REPO_ROOT, BenchService, ServerOptions

CLIENT_SOURCE = REPO_ROOT / "client" / "src"


def jpeg(index: int, size_kb: int) -> bytes:
    """A noisy JPEG (so its size is about `size_kb`), different for every index."""
    rng = random.Random(index)
    side = max(16, int((size_kb * 1024 / 0.9) ** 0.5))
    pixels = bytes(rng.getrandbits(8) for _ in range(side * side))
    image = Image.frombytes("L", (side, side), pixels).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def write_tree(root: Path, count: int, size_kb: int) -> int:
    total = 0
    for index in range(count):
        folder = root / f"cam{index % 4}" / ("cat", "dog", "bird")[index % 3]
        folder.mkdir(parents=True, exist_ok=True)
        content = jpeg(index, size_kb)
        total += len(content)
        (folder / f"frame{index:05d}.jpg").write_bytes(content)
        if index % 2:
            (folder / f"frame{index:05d}.jpg.json").write_text(json.dumps({"index": index}))
    return total


def imagestore(url: str, *arguments: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one `imagestore` command."""
    environment = {**os.environ, "PYTHONPATH": str(CLIENT_SOURCE)}
    command = [sys.executable, "-m", "imagestore_client", "--url", url, "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([*command, *arguments], env=environment, capture_output=True, check=True)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu


def run(count: int, size_kb: int, jobs_values: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="imagestore-client-bench-") as workdir:
        root = Path(workdir)
        size = write_tree(root / "tree", count, size_kb)
        print(f"{count} images, {size / 1e6:.1f} MB ({size / count / 1024:.0f} KB each)")
        service = BenchService(root / "service", ServerOptions())
        service.start()
        try:
            url = service.url
            print(
                f"{'run':<22} {'jobs':>4} {'wall s':>7} {'images/s':>9} {'client ms/img':>13} "
                f"{'svc ms/img':>10} {'DB ms/img':>9} {'load':>6}"
            )
            for jobs in jobs_values:
                mongo = service.mongo()
                mongo.get_default_database().images.delete_many({})
                mongo.close()
                dest = root / f"pull-{jobs}"
                for label, arguments in (
                    ("push (empty service)", ["push", str(root / "tree"), "--folders-as", "camera,label"]),
                    ("push again (skipped)", ["push", str(root / "tree"), "--folders-as", "camera,label"]),
                    ("pull (empty folder)", ["pull", str(dest)]),
                    ("pull again (skipped)", ["pull", str(dest)]),
                ):  # fmt: skip
                    before = load_average()
                    service_cpu = service.service_group().cpu_seconds()
                    database_cpu = service.database_group().cpu_seconds()
                    seconds, cpu = imagestore(url, *arguments, "--jobs", str(jobs))
                    service_cpu = service.service_group().cpu_seconds() - service_cpu
                    database_cpu = service.database_group().cpu_seconds() - database_cpu
                    print(
                        f"{label:<22} {jobs:>4} {seconds:7.2f} {count / seconds:9.1f} "
                        f"{cpu / count * 1000:13.2f} {service_cpu / count * 1000:10.2f} "
                        f"{database_cpu / count * 1000:9.2f} {before.split()[0]}-{load_average().split()[0]}"
                    )
        finally:
            service.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size-kb", type=int, default=50)
    parser.add_argument("--jobs", default="1,8", help="comma-separated --jobs values")
    arguments = parser.parse_args(argv)
    run(arguments.images, arguments.size_kb, [int(v) for v in arguments.jobs.split(",")])


if __name__ == "__main__":
    main()
