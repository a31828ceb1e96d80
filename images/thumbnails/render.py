"""Making one thumbnail in bounded memory: libvips shrinks while it decodes, Pillow finishes.

libvips (pyvips) decodes JPEG already shrunk (up to 8 times, in the decoder) and streams PNG,
WebP, TIFF, GIF and HEIF rows into the shrink, so a 64-megapixel PNG costs tens of MiB instead
of the ~250 MiB of a whole decode (`python -m benchmarks.thumbnail_engines` prints the figures).
Formats libvips does not read (BMP, ICO, PPM...) are decoded by Pillow (JPEG draft, reduce).
The header says first what the decoding will cost (`plan_decoding`): sources over
THUMBNAIL_MAX_PIXELS are refused (422), and the estimated memory (a few rows of the width when
streamed; every pixel for progressive JPEG, interlaced PNG, GIF, HEIF and Pillow's formats) is
what images.thumbnails.gate charges against THUMBNAIL_MEMORY_MB. The small picture is then converted and encoded by Pillow: 16-bit values scaled to 8 bits, EXIF
orientation applied, alpha kept in WebP and put on white in JPEG.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import IO, cast

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from images.core.errors import Unprocessable
from images.thumbnails.keys import JPEG, OutputFormat

logger = logging.getLogger(__name__)
_BACKGROUND = (255, 255, 255)
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
# Memory estimates (measured with benchmarks/thumbnail_engines.py): libvips streams these
# loaders through about this many rows of the (JPEG: shrunk) width; the rest it decodes whole.
_STREAMED = frozenset({"jpegload", "pngload", "tiffload", "webpload"})
_STREAMED_ROWS = 1800
_BASE_MEMORY = 8 * 1024 * 1024
ALLOWED_LIBVIPS_LOADERS = (
    "VipsForeignLoadJpeg",
    "VipsForeignLoadUhdr",
    "VipsForeignLoadPng",
    "VipsForeignLoadWebp",
    "VipsForeignLoadTiff",
    "VipsForeignLoadNsgif",
    "VipsForeignLoadHeif",
)
_SAMPLE_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4}


class NotAnImage(Unprocessable):
    """The stored file cannot be made into a thumbnail (not an image, or too large to)."""


@functools.cache
def libvips() -> ModuleType | None:
    """pyvips, loaded on the first render (in the worker, after gunicorn forks), or None."""
    try:
        import pyvips
    except (ImportError, OSError) as error:  # no libvips: every format goes through Pillow
        logger.warning("libvips is unavailable, thumbnails decode whole images: %s", error)
        return None
    pyvips.cache_set_max(0)  # no operation cache: it would keep pictures and stale files
    pyvips.concurrency_set(1)  # one thread per render; THUMBNAIL_CONCURRENCY bounds renders
    # Stored files are untrusted: only the image loaders thumbnails need (no SVG, CSV, matrix or
    # .vips files, nothing libvips itself marks untrusted).
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LIBVIPS_LOADERS:
        pyvips.operation_block_set(loader, False)
    return pyvips


@dataclass(frozen=True)
class Decoding:
    """How a source will be decoded, read from its header: by whom, and at what memory cost."""

    engine: str  # "libvips" or "pillow"
    width: int
    height: int
    memory: int  # estimated peak bytes of the decoding


def plan_decoding(source: IO[bytes]) -> Decoding:
    """The header of the picture in `source` (a real file); 422 if it is none or too large."""
    with _undecodable_as_422():
        decoding = _libvips_decoding(source) or _pillow_decoding(source)
    limit = settings.THUMBNAIL_MAX_PIXELS
    if decoding.width * decoding.height > limit:
        raise NotAnImage(
            f"The image is too large to make a thumbnail of: {decoding.width}x{decoding.height} "
            f"pixels, over THUMBNAIL_MAX_PIXELS ({limit})"
        )
    return decoding


def render_thumbnail(
    source: IO[bytes], decoding: Decoding, size: int, output: OutputFormat
) -> bytes:
    """The picture scaled to fit a `size` by `size` square, encoded as `output`."""
    with small_picture(source, decoding, size) as picture:
        return _encoded(picture, output)


@contextlib.contextmanager
def small_picture(source: IO[bytes], decoding: Decoding, size: int) -> Iterator[Image.Image]:
    """The picture upright, in 8-bit RGB, RGBA or L, scaled to fit a `size` by `size` square."""
    with _undecodable_as_422():
        picture = None
        if decoding.engine == "libvips":
            picture = _shrunk_by_libvips(source, size)
        if picture is None:
            picture = _opened_by_pillow(source, size)
        with picture:
            small = ImageOps.exif_transpose(_displayable(picture))
            small.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            yield small


@contextlib.contextmanager
def _undecodable_as_422() -> Iterator[None]:
    try:
        yield
    except Image.DecompressionBombError:
        raise NotAnImage("The image is too large to make a thumbnail of") from None
    except _DECODE_ERRORS as error:
        raise NotAnImage(
            f"The stored file is not a decodable image ({error.__class__.__name__})"
        ) from None


def _libvips_decoding(source: IO[bytes]) -> Decoding | None:
    vips = libvips()
    if vips is None:
        return None
    try:
        header = vips.Image.new_from_source(_vips_source(vips, source), "", access="sequential")
        loader = header.get("vips-loader").removesuffix("_source")
        interlaced = header.get_typeof("interlaced") != 0 and bool(header.get("interlaced"))
    except vips.Error:
        return None  # not a format libvips reads
    pixel = header.bands * _SAMPLE_BYTES.get(header.format, 8)
    width, height = header.width, header.height
    if loader in _STREAMED and not interlaced:
        shrunk_width = width // 8 if loader == "jpegload" else width
        memory = shrunk_width * pixel * _STREAMED_ROWS
    elif loader == "jpegload":  # progressive: the decoder keeps every coefficient
        memory = width * height * 3
    else:  # interlaced PNG, GIF, HEIF...: the whole picture
        memory = width * height * max(pixel, 4)
    return Decoding("libvips", width, height, memory + _BASE_MEMORY)


def _pillow_decoding(source: IO[bytes]) -> Decoding:
    source.seek(0)
    with Image.open(source) as image:
        width, height = image.size
    # 4 bytes a pixel held by Pillow, and a converted copy of part of it.
    return Decoding("pillow", width, height, width * height * 5 + _BASE_MEMORY)


def _shrunk_by_libvips(source: IO[bytes], size: int) -> Image.Image | None:
    """The picture shrunk to fit `size`, as a Pillow image; None if libvips fails on it."""
    vips = libvips()
    if vips is None:
        return None
    try:
        shrunk = vips.Image.thumbnail_source(
            _vips_source(vips, source), size, height=size, size="down"
        )
        # TIFF keeps what the picture is (bands, 16 bits, alpha) for Pillow to convert.
        lossless = shrunk.write_to_buffer(".tif")
    except vips.Error as error:
        logger.info("libvips could not shrink the image, Pillow tries: %s", error)
        return None
    return Image.open(io.BytesIO(lossless))


def _vips_source(vips: ModuleType, source: IO[bytes]):
    # libvips reads the descriptor itself: Python's read buffer is dropped first (a seek from
    # the end always reaches the OS), or a later seek relative to it would land before 0.
    source.seek(0, os.SEEK_END)
    source.seek(0)
    return vips.Source.new_from_descriptor(source.fileno())


def _opened_by_pillow(source: IO[bytes], size: int) -> Image.Image:
    source.seek(0)
    image = Image.open(source)
    image.draft("RGB", (size, size))
    return image


def _encoded(picture: Image.Image, output: OutputFormat) -> bytes:
    if output is JPEG:
        picture = _without_alpha(picture)
    buffer = io.BytesIO()
    picture.save(buffer, output.pillow_format, **output.save_options)
    return buffer.getvalue()


def _displayable(image: Image.Image) -> Image.Image:
    """8-bit RGB, RGBA or L: the modes thumbnails are scaled and encoded in."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode.startswith("I;16"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if mode in ("I", "F"):
        return _stretch(image)
    if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _stretch(image: Image.Image) -> Image.Image:
    """32-bit integer or float pixels mapped linearly onto 0..255.

    Integers that fit 16 bits are scaled from 0..65535 (16-bit PNGs may open as "I"); other
    values are scaled from their own range.
    """
    low, high = cast("tuple[float, float]", image.getextrema())  # one band
    if image.mode == "I" and low >= 0 and high <= 65535:
        low, high = 0, 65535
    span = (high - low) or 1
    return image.convert("F").point(lambda value: (value - low) * 255.0 / span).convert("L")


def _without_alpha(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: transparent pixels become white."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGBA", image.size, (*_BACKGROUND, 255))
    return Image.alpha_composite(background, image).convert("RGB")
