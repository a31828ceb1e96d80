"""`python -m benchmarks.limits`: what the checks of images/limits/ cost per request.

Times each check in-process on the inputs a normal request carries (a `json` form field, a
PATCH body, a `filter` with `$regex`, a document's `data`) and on the largest ones allowed (a
2 MiB body), next to the decoder alone, and reads a 10,000-document manifest with the bounded
reader and with ijson's item builder used before. Prints microseconds per call; asserts nothing.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
django.setup()

import ijson  # noqa: E402
import orjson  # noqa: E402

from images.core.query import parse_filter  # noqa: E402
from images.limits import bounded_json  # noqa: E402
from images.limits.documents import check_data, growth_conditions  # noqa: E402
from images.limits.patterns import check_pattern  # noqa: E402

FIELD = json.dumps({"camera": "cam1", "label": "cat", "score": 0.93, "tags": ["a", "b"]})
PATCH = json.dumps({f"k{i}": {"v": i, "tags": ["x", "y"]} for i in range(20)}).encode()
LARGEST = json.dumps([{"a": i, "b": [i, {"c": "text"}]} for i in range(60_000)]).encode()
FILTER = json.dumps({"data.label": {"$regex": "^cam\\d+_[a-z]+$", "$options": "i"}, "n": 1})
DATA = {"camera": "cam1", "label": "cat", "score": 0.93, "tags": ["a", "b"], "box": [1, 2, 3, 4]}


def per_call(function: Callable[[], object], seconds: float = 0.5) -> float:
    """Median microseconds per call over a few rounds of about `seconds` each."""
    function()
    rounds = []
    for _ in range(5):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 5:
            function()
            count += 1
        rounds.append(elapsed / count * 1e6)
    return sorted(rounds)[2]


def manifest(count: int) -> bytes:
    items = [
        {
            "_id": f"{i:024x}",
            "file": f"cam/{i}.jpg",
            "time": "2026-11-01T08:00:00.000Z",
            "data": {"camera": "cam1", "n": i, "tags": ["a", "b"]},
        }
        for i in range(count)
    ]
    return json.dumps(items).encode()


def old_manifest_reader(raw: bytes) -> int:
    return sum(1 for _ in ijson.items(io.BytesIO(raw), "item", use_float=True))


def new_manifest_reader(raw: bytes) -> int:
    return sum(1 for _ in bounded_json.array_items(io.BytesIO(raw), "m", 34))


def main() -> None:
    rows = [
        ("json field (110 B): orjson alone", lambda: orjson.loads(FIELD)),
        ("json field (110 B): bounded", lambda: bounded_json.loads(FIELD, "f", 33)),
        (f"PATCH body ({len(PATCH)} B): json alone", lambda: json.loads(PATCH)),
        (
            f"PATCH body ({len(PATCH)} B): depth check",
            lambda: bounded_json.nesting_exceeds(PATCH, 34),
        ),
        (f"largest body ({len(LARGEST) >> 20} MiB): json alone", lambda: json.loads(LARGEST)),
        (
            f"largest body ({len(LARGEST) >> 20} MiB): depth check",
            lambda: bounded_json.nesting_exceeds(LARGEST, 34),
        ),
        ("filter with $regex: whole parse_filter", lambda: parse_filter(FILTER)),
        ("filter with $regex: check_pattern", lambda: check_pattern("^cam\\d+_[a-z]+$", "i")),
        ("data (5 keys): check_data", lambda: check_data(DATA)),
        (
            "PATCH (20 keys): growth_conditions",
            lambda: growth_conditions({"$set": json.loads(PATCH)}),
        ),
    ]
    for label, function in rows:
        print(f"{label:<48} {per_call(function):>10.1f} µs")
    raw = manifest(10_000)
    for label, reader in (
        ("ijson items (before)", old_manifest_reader),
        ("bounded reader", new_manifest_reader),
    ):
        started = time.perf_counter()
        assert reader(raw) == 10_000
        elapsed = time.perf_counter() - started
        print(
            f"manifest of 10,000 documents ({len(raw) >> 20} MiB), {label:<22} {elapsed * 1000:>8.0f} ms"
        )
    print("load average:", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
