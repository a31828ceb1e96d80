"""The perceptual hash of a picture: 64 bits that stay close when the picture is re-encoded,
resized, slightly cropped, brightened or turned grey, and differ by about half their bits
between unrelated pictures.

The hash is `imagehash.phash` (the signs of the lowest 8x8 DCT coefficients of a 32x32 grey
picture), so a team can compute the same hash in a notebook. The picture is decoded the way
thumbnails are (libvips shrinking while it decodes, in bounded memory, counted against the
thumbnail gate), and only its small version reaches imagehash. Under gevent workers every step
but the wait for the gate runs on a native thread (`images.runtime.offload`): reading a header
may take seconds too.

For lookups the hash is split into bands of `BAND_WIDTHS` bits (multi-index hashing). Two
hashes within Hamming distance `d` differ in at most `r_i` bits of some band `i` whenever the
radii satisfy sum(r_i + 1) > d (pigeonhole: were every band `i` off by more than `r_i`, the total
would exceed `d`). So candidates are the documents with one band value within its radius of the
hash's own (`band_keys`), found through an index, never by scanning. Three wide bands keep both
the values asked for and the candidates read small: at distance 10, 3,588 values and about
0.13% of uniformly random hashes; four bands of 16 bits read six times as many candidates
(`make bench-growth`, docs/performance.md).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import imagehash
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from images.core.documents import PHASH_BANDS
from images.core.errors import Unprocessable
from images.runtime.offload import run_off_loop
from images.thumbnails.gate import GATE
from images.thumbnails.render import Decoding, plan_decoding, small_picture

HASH_BITS = 64
BAND_WIDTHS = (22, 21, 21)
# A stored band value carries its band's number above its bits, so one index holds all bands.
_TAG_SHIFT = 24
# The distance under which two pictures count as near-copies unless a request says otherwise,
# and the largest a request may ask for (the lookup grows with it; see docs/near-duplicates.md).
DEFAULT_DISTANCE = 10
MAX_DISTANCE = 12
# Decoded no larger than this before imagehash shrinks it to 32x32.
_DECODE_SIZE = 64
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def load_hashing() -> None:
    """Import the scipy FFT that imagehash's phash imports at its first call (about 30 MB, 0.4 s).
    `serve` calls this in its master before the workers fork: they share one copy, and no
    worker imports it at its first upload on one of gevent's native threads, its other requests
    waiting. Management commands that hash nothing never pay for it."""
    import scipy.fftpack  # type: ignore[import-untyped]  # noqa: F401


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
    source.seek(0)
    with Image.open(source) as picture:
        picture.draft("L", (_DECODE_SIZE, _DECODE_SIZE))
        return str(imagehash.phash(ImageOps.exif_transpose(picture)))


def _decoded_hash(source: IO[bytes], decoding: Decoding) -> str:
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
    """The hash's bands as stored for the index: band `i` with bits `v` is `i << 24 | v`."""
    value = int(phash, 16)
    stored = []
    for band, (shift, width) in enumerate(_band_layout()):
        stored.append(band << _TAG_SHIFT | (value >> shift) & ((1 << width) - 1))
    return stored


def band_keys(phash: str, within: int) -> list[int]:
    """Every stored band value of which a hash within distance `within` of `phash` has one."""
    keys: list[int] = []
    for key, width, radius in zip(bands(phash), BAND_WIDTHS, band_radii(within), strict=True):
        keys.extend(key ^ mask for mask in _masks(width, radius))
    return keys


def band_radii(within: int) -> list[int]:
    """The smallest radii with sum(r_i + 1) = within + 1, spread evenly (-1: the band is not
    looked up at all)."""
    share, extra = divmod(within + 1, len(BAND_WIDTHS))
    return [share - 1 + (1 if band < extra else 0) for band in range(len(BAND_WIDTHS))]


def _band_layout() -> list[tuple[int, int]]:
    """(shift, width) of each band, lowest bits first."""
    shifts = itertools.accumulate(BAND_WIDTHS[:-1], initial=0)
    return list(zip(shifts, BAND_WIDTHS, strict=True))


def _masks(width: int, radius: int) -> Iterator[int]:
    for count in range(radius + 1):
        for bits in itertools.combinations(range(width), count):
            yield sum(1 << bit for bit in bits)


def is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == HASH_BITS // 4 and _is_hex(value)


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return True
