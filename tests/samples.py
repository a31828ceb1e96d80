"""Small sample images in the formats the service promises facts and thumbnails for."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Sample:
    name: str
    content: bytes
    width: int
    height: int
    format: str
    mode: str
    content_type: str


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def half_transparent_png(width: int = 300, height: int = 200) -> bytes:
    """Left half fully transparent, right half opaque blue."""
    image = Image.new("RGBA", (width, height), (0, 0, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    return encode(image, "PNG")


def gray16_png(width: int = 200, height: int = 100, value: int = 40000) -> bytes:
    return encode(Image.new("I;16", (width, height), value), "PNG")


def rotated_jpeg() -> bytes:
    """64x32 pixels stored, EXIF orientation 6: shown rotated, 32 wide and 64 high."""
    image = Image.new("RGB", (64, 32), "green")
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def samples() -> list[Sample]:
    return [
        Sample(
            "photo.jpg",
            encode(Image.new("RGB", (640, 480), (200, 30, 30)), "JPEG"),
            640,
            480,
            "JPEG",
            "RGB",
            "image/jpeg",
        ),
        Sample("alpha.png", half_transparent_png(), 300, 200, "PNG", "RGBA", "image/png"),
        Sample("depth.png", gray16_png(), 200, 100, "PNG", "I;16", "image/png"),
        Sample(
            "scan.tiff",
            encode(Image.new("RGB", (100, 400), (10, 120, 10)), "TIFF"),
            100,
            400,
            "TIFF",
            "RGB",
            "image/tiff",
        ),
        Sample(
            "web.webp",
            encode(Image.new("RGB", (512, 512), (20, 20, 200)), "WEBP"),
            512,
            512,
            "WEBP",
            "RGB",
            "image/webp",
        ),
    ]


SAMPLES = {sample.name: sample for sample in samples()}
