"""Request bodies and seed data: a ~100 KB JPEG, upload and import bodies, seed documents."""

from __future__ import annotations

import datetime as dt
import io
import random
import zipfile
from collections.abc import Iterator
from typing import Any

from PIL import Image

from benchmarks.client import VARY_TOKEN

BOUNDARY = "imagestore-benchmark-boundary"
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
UPLOAD_FIELDS = {"camera": "upload", "site": "bench-site", "note": "benchmark upload"}
SEED_CAMERAS = 20


def jpeg_of_about(target_bytes: int = 100 * 1024, seed: int = 0) -> bytes:
    """A noise JPEG whose size is within a few percent of `target_bytes`."""
    generator = random.Random(seed)
    width = 160
    while True:
        height = width * 3 // 4
        pixels = generator.randbytes(width * height * 3)
        buffer = io.BytesIO()
        Image.frombytes("RGB", (width, height), pixels).save(buffer, "JPEG", quality=75)
        size = buffer.tell()
        if abs(size - target_bytes) <= target_bytes * 0.03:
            return buffer.getvalue()
        width = max(16, int(width * (target_bytes / size) ** 0.5))


def multipart_body(
    fields: dict[str, str], file_field: str, filename: str, content: bytes, content_type: str
) -> bytes:
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    parts.append(
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
        f'name="{file_field}"; filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    )
    return "".join(parts).encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def upload_body(jpeg: bytes) -> bytes:
    """POST /images: the JPEG under a per-request name, plus three plain fields."""
    name = f"bench-{VARY_TOKEN.decode()}.jpg"
    return multipart_body(UPLOAD_FIELDS, "image", name, jpeg, "image/jpeg")


def import_body(jpeg: bytes, images: int) -> bytes:
    """POST /import: a zip of `images` JPEGs (no manifest: one document per image)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(images):
            archive.writestr(f"import/{index:04d}.jpg", jpeg)
    return multipart_body(
        {"camera": "import"}, "archive", "bench.zip", buffer.getvalue(), "application/zip"
    )


def seed_documents(count: int, batch: int = 1000, start: int = 0) -> Iterator[list[dict[str, Any]]]:
    """Documents as the service stores them, `data.camera` spread over SEED_CAMERAS values;
    numbered from `start` (a collection grown in steps keeps its paths unique)."""
    first_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    documents = []
    for index in range(start, start + count):
        documents.append(
            {
                "file": f"seed/{index:06d}.jpg",
                "userId": None,
                "time": first_time + dt.timedelta(seconds=index),
                "data": {
                    "camera": f"cam{index % SEED_CAMERAS:02d}",
                    "site": f"site{index % 7}",
                    "frame": index,
                    "tags": ["seed", f"t{index % 5}"],
                    "reviewed": False,
                },
                "size": 102400,
                "sha256": f"{index:064x}",
                "width": 640,
                "height": 480,
                "format": "JPEG",
                "mode": "RGB",
                "contentType": "image/jpeg",
            }
        )
        if len(documents) >= batch:
            yield documents
            documents = []
    if documents:
        yield documents
