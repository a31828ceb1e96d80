"""Request bodies and seed data: a ~100 KB JPEG, upload and import bodies, seed documents."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import zipfile
from collections.abc import Iterator
from typing import Any

from PIL import Image

from benchmarks.client import VARY_TOKEN
from images.core.documents import PHASH_BANDS
from images.duplicates.perceptual import bands

BOUNDARY = "imagestore-benchmark-boundary"
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
UPLOAD_FIELDS = {"camera": "upload", "site": "bench-site", "note": "benchmark upload"}
SEED_CAMERAS = 20
# Perceptual hashes of seeded documents (`seed_documents(hashes=True)`): 1 in BLANK_EVERY is a
# blank frame (the hash of a uniform picture: only the DC bit set), 1 in COPY_EVERY a near-copy
# of an earlier document (0 to COPY_MAX_FLIPS bits flipped), the rest uniformly random.
BLANK_HASH = "8000000000000000"
BLANK_EVERY, BLANK_AT = 500, 0
COPY_EVERY, COPY_AT, SOURCE_AT = 100, 1, 2
COPY_MAX_FLIPS = 6


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


def _random_hash(index: int) -> int:
    digest = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=8, person=b"seedhash")
    return int.from_bytes(digest.digest(), "little")


def seed_phash(index: int) -> str:
    """The perceptual hash of seeded document `index`, the same whatever the batch (a
    collection grown in steps gets the same hashes as one seeded at once): a blank frame, a
    near-copy of an earlier uniformly random document, or uniformly random."""
    if index % BLANK_EVERY == BLANK_AT:
        return BLANK_HASH
    if index % COPY_EVERY == COPY_AT and index > COPY_EVERY:
        chooser = random.Random(index)
        # An earlier index ending in SOURCE_AT: never a blank frame nor a copy itself.
        source = chooser.randrange(index // COPY_EVERY) * COPY_EVERY + SOURCE_AT
        flipped = sum(
            1 << bit for bit in chooser.sample(range(64), chooser.randint(0, COPY_MAX_FLIPS))
        )
        return f"{_random_hash(source) ^ flipped:016x}"
    return f"{_random_hash(index):016x}"


def seed_documents(
    count: int, batch: int = 1000, start: int = 0, hashes: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """Documents as the service stores them, `data.camera` spread over SEED_CAMERAS values;
    numbered from `start` (a collection grown in steps keeps its paths unique). With
    `hashes`, each has a `phash` (`seed_phash`) and its `phashBands`, as an upload stores them."""
    first_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    documents = []
    for index in range(start, start + count):
        document: dict[str, Any] = {
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
        if hashes:
            phash = seed_phash(index)
            document |= {"phash": phash, PHASH_BANDS: bands(phash)}
        documents.append(document)
        if len(documents) >= batch:
            yield documents
            documents = []
    if documents:
        yield documents
