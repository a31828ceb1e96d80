"""`python -m benchmarks.writes`: what the write path costs an upload.

Part 1 starts a fresh `manage.py serve` (local disk) from each given source tree in turn,
alternating them for `--rounds` rounds (the machine is shared: alternating spreads its noise over
both), and times sequential uploads of new paths and re-uploads of one path. Part 2 times
staging and promoting files on local disk with and without fsync, in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.payloads import jpeg_of_about
from benchmarks.processes import load_average
from benchmarks.service import REPO_ROOT, BenchService


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", default=str(REPO_ROOT), help="comma-separated source trees")
    parser.add_argument("--uploads", type=int, default=200, help="uploads per kind and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-kb", type=int, default=100)
    return parser.parse_args()


def time_uploads(client: httpx.Client, content: bytes, paths: list[str]) -> list[float]:
    timings = []
    for path in paths:
        started = time.perf_counter()
        response = client.post(
            "/images", files={"image": ("x.jpg", content)}, data={"file": path, "n": "1"}
        )
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


def summary(timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):6.2f} ms, p95 {p95:6.2f} ms"


def http_part(roots: list[Path], uploads: int, rounds: int, content: bytes) -> None:
    results: dict[tuple[str, str], list[float]] = {}
    for number in range(rounds):
        for root in roots:
            with tempfile.TemporaryDirectory(prefix="imagestore-writes-") as workdir:
                service = BenchService(Path(workdir), root=root)
                service.start()
                try:
                    with httpx.Client(base_url=service.url, timeout=60) as client:
                        time_uploads(client, content, [f"warm/{i}.jpg" for i in range(20)])
                        new = time_uploads(
                            client, content, [f"r{number}/{i}.jpg" for i in range(uploads)]
                        )
                        again = time_uploads(client, content, ["same.jpg"] * uploads)
                finally:
                    service.stop()
            results.setdefault((str(root), "new path"), []).extend(new)
            results.setdefault((str(root), "re-upload"), []).extend(again)
            print(f"round {number + 1} {root}: new {summary(new)}; re-upload {summary(again)}; "
                  f"load {load_average()}", flush=True)  # fmt: skip
    for (root, kind), timings in results.items():
        print(f"{root:40} {kind:10} {summary(timings)} ({len(timings)} uploads)")


def fsync_part(content: bytes, files: int, rounds: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
    import django

    django.setup()
    from django.core.files.storage import FileSystemStorage

    from images.store.files import LocalFileStore, new_staging_key

    real_fsync = os.fsync
    totals: dict[str, list[float]] = {"fsync": [], "no fsync": []}
    for _ in range(rounds):
        for label in totals:
            os.fsync = real_fsync if label == "fsync" else (lambda descriptor: None)
            with tempfile.TemporaryDirectory(prefix="imagestore-fsync-", dir=REPO_ROOT) as root:
                store = LocalFileStore(FileSystemStorage(location=root))
                started = time.perf_counter()
                for i in range(files):
                    staging = new_staging_key()
                    with tempfile.SpooledTemporaryFile() as source:
                        source.write(content)
                        source.seek(0)
                        store.stage(source, staging)
                    store.promote(staging, f"d{i % 20}/{i}.jpg", len(content))
                totals[label].append((time.perf_counter() - started) * 1000 / files)
    os.fsync = real_fsync
    for label, per_file in totals.items():
        print(f"stage + promote, {label:9}: {statistics.median(per_file):6.2f} ms per file "
              f"(median of {rounds} rounds of {files}); load {load_average()}")  # fmt: skip


def main() -> None:
    arguments = parse_args()
    content = jpeg_of_about(arguments.size_kb * 1024)
    print(f"load before: {load_average()}")
    http_part(
        [Path(r) for r in arguments.roots.split(",")], arguments.uploads, arguments.rounds, content
    )
    fsync_part(content, arguments.uploads, arguments.rounds)
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
