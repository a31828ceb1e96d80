"""The perceptual hash of a picture: 64 bits that stay close when the picture is re-encoded,
resized, slightly cropped, brightened or turned grey, and differ by about half their bits
between unrelated pictures.

The hash is `imagehash.phash` (the signs of the lowest 8x8 DCT coefficients of a 32x32 grey
picture), so a team can compute the same hash in a notebook. The picture is decoded the way
thumbnails are (libvips shrinking while it decodes, in bounded memory, counted against the
thumbnail gate), and only its small version reaches imagehash. Under gevent workers every step
but the wait for the gate runs on a native thread (`images.runtime.offload`): reading a header
may take seconds too.

For lookups the hash is split into `BANDS` bands of `BAND_BITS` bits: two hashes within
Hamming distance `d` agree on some band within `d // BANDS` bits (pigeonhole), so candidates
are the documents with one of a band's values within that many bits of the hash's own
(`band_keys`), found through an index, never by scanning.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from images.core.documents import PHASH_BANDS
from images.core.errors import Unprocessable
from images.runtime.offload import run_off_loop
from images.thumbnails.gate import GATE
from images.thumbnails.render import Decoding, plan_decoding, small_picture

HASH_BITS = 64
BANDS = 4
BAND_BITS = HASH_BITS // BANDS
BAND_MASK = (1 << BAND_BITS) - 1
# The distance under which two pictures count as near-copies unless a request says otherwise,
# and the largest a request may ask for (the lookup grows with it; see docs/near-duplicates.md).
DEFAULT_DISTANCE = 10
MAX_DISTANCE = 12
# Decoded no larger than this before imagehash shrinks it to 32x32.
_DECODE_SIZE = 64
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def perceptual_facts(source: IO[bytes]) -> dict[str, Any]:
    """`phash` and its bands for a document, or nothing when there is no picture to hash."""
    phash = perceptual_hash(source)
    return {} if phash is None else {"phash": phash, PHASH_BANDS: bands(phash)}


def perceptual_hash(source: IO[bytes]) -> str | None:
    """The hash of the picture in `source` as 16 hex digits (imagehash's text form), or None
    when it is not a picture this service can decode within its limits."""
    try:
        if _is_jpeg(source):
            return _jpeg_hash(source)
        with _real_file(source) as real:
            # Reading the header may take seconds (a TIFF's every page): off the loop too.
            decoding = run_off_loop(plan_decoding, real)
            with GATE.slot(decoding.memory):
                return run_off_loop(_decoded_hash, real, decoding)
    except Unprocessable:
        return None
    finally:
        source.seek(0)


def _is_jpeg(source: IO[bytes]) -> bool:
    source.seek(0)
    return source.read(3) == b"\xff\xd8\xff"


def _jpeg_hash(source: IO[bytes]) -> str | None:
    """libjpeg decodes a JPEG already shrunk (to an eighth): a third of libvips' time here."""
    try:
        memory = run_off_loop(_jpeg_memory, source)  # its markers are read up to the pixels
        if memory is None:
            return None
        with GATE.slot(memory):
            return run_off_loop(_shrunk_jpeg_hash, source)
    except (Image.DecompressionBombError, *_DECODE_ERRORS):
        return None


def _jpeg_memory(source: IO[bytes]) -> int | None:
    """What decoding the JPEG shrunk will hold; None past THUMBNAIL_MAX_PIXELS."""
    source.seek(0)
    with Image.open(source) as picture:
        width, height = picture.size
        if width * height > settings.THUMBNAIL_MAX_PIXELS:
            return None
        progressive = "progressive" in picture.info or "progression" in picture.info
    # Progressive: the decoder keeps every coefficient; baseline: a few shrunk rows.
    return width * height * 3 if progressive else width * 3 * 64


def _shrunk_jpeg_hash(source: IO[bytes]) -> str:
    import imagehash

    source.seek(0)
    with Image.open(source) as picture:
        picture.draft("L", (_DECODE_SIZE, _DECODE_SIZE))
        return str(imagehash.phash(ImageOps.exif_transpose(picture)))


def _decoded_hash(source: IO[bytes], decoding: Decoding) -> str:
    import imagehash

    with small_picture(source, decoding, _DECODE_SIZE) as picture:
        return str(imagehash.phash(picture))


@contextlib.contextmanager
def _real_file(source: IO[bytes]) -> Iterator[IO[bytes]]:
    """libvips reads through a descriptor; an upload held in memory (at most
    FILE_UPLOAD_MAX_MEMORY_SIZE) is copied to a temporary file to get one (an import's spool
    writes itself out, at most 8 MiB: milliseconds of the loop, not worth a native thread)."""
    try:
        source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    else:
        yield source
        return
    with tempfile.TemporaryFile() as copy:
        source.seek(0)
        shutil.copyfileobj(source, copy)
        yield copy


def distance(first: str, second: str) -> int:
    return (int(first, 16) ^ int(second, 16)).bit_count()


def bands(phash: str) -> list[int]:
    """The hash's bands as stored for the index: band `i` with value `v` is `i << 16 | v`, so
    one multikey index holds all of them."""
    value = int(phash, 16)
    return [
        (band << BAND_BITS) | (value >> (band * BAND_BITS)) & BAND_MASK for band in range(BANDS)
    ]


def band_keys(phash: str, within: int) -> list[int]:
    """Every stored band value a hash within distance `within` of `phash` must have one of."""
    flips = within // BANDS
    masks = [0]
    for count in range(1, flips + 1):
        for bits in itertools.combinations(range(BAND_BITS), count):
            masks.append(sum(1 << bit for bit in bits))
    keys: list[int] = []
    for key in bands(phash):
        keys.extend(key ^ mask for mask in masks)
    return keys


def is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == HASH_BITS // 4 and _is_hex(value)


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return True
