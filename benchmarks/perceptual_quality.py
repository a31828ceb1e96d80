"""`python -m benchmarks.perceptual_quality [--details]`: how well the perceptual hash finds copies.

Hashes real photos and copies of them with the service's own hash
(`images.duplicates.perceptual.perceptual_hash`, the path an upload takes), then prints a
markdown table: for each kind of copy, the recall at Hamming distances 4, 6, 8, 10 and 12 (the
fraction of copies whose hash is within that distance of their original's), and for pairs of
different originals the false-positive rate at the same distances (the fraction of pairs within
it), with the median and worst distance of each row; below it, the hash time per image.
`--details` also prints each copy's distance to its original.

Originals: the colour and grey photos scikit-image ships in `skimage.data` (a development
requirement; tiny, synthetic and 3-D samples, and those needing a download, are left out, and
`cat` is `chelsea`). They are fewer than 20, so the two largest, `retina` and
`hubble_deep_field`, are cut into 2x2 non-overlapping tiles that stand as originals instead of
the whole photo. scikit-learn's digits are not used: scikit-learn is not a requirement.

Each original is encoded as JPEG q=90; its copies are re-encoded at q=50, resized to 50%,
cropped by 2.5% on each side, brightened by 10% (`ImageEnhance.Brightness(1.1)`) and turned
grey (colour originals only), each encoded as JPEG q=90 but the q=50 copy. A few seconds; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.processes import load_average

DISTANCES = (4, 6, 8, 10, 12)
QUALITY = 90
PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "stereo_motorcycle",  # the left view only: the right one is a near-copy of it
    "text",
)
TILED = ("retina", "hubble_deep_field")
TILES = 2

Hasher = Callable[[bytes], str]
# Per kind of copy, each original's name and its copy's distance to it.
Distances = dict[str, dict[str, int]]


def sample(name: str) -> Image.Image:
    from skimage import data

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):
        pixels = pixels[0]
    return Image.fromarray(np.asarray(pixels))


def tiles(picture: Image.Image) -> list[Image.Image]:
    width, height = picture.width // TILES, picture.height // TILES
    return [
        picture.crop((x * width, y * height, (x + 1) * width, (y + 1) * height))
        for y in range(TILES)
        for x in range(TILES)
    ]


def originals() -> dict[str, Image.Image]:
    found = {name: sample(name) for name in PHOTOS}
    for name in TILED:
        for index, tile in enumerate(tiles(sample(name))):
            found[f"{name}[{index}]"] = tile
    return found


def encode(picture: Image.Image, quality: int = QUALITY) -> bytes:
    output = io.BytesIO()
    picture.save(output, "JPEG", quality=quality)
    return output.getvalue()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.copy()


def resized(picture: Image.Image) -> Image.Image:
    size = (picture.width // 2, picture.height // 2)
    return picture.resize(size, Image.Resampling.LANCZOS)


def cropped(picture: Image.Image) -> Image.Image:
    dx, dy = round(picture.width * 0.025), round(picture.height * 0.025)
    return picture.crop((dx, dy, picture.width - dx, picture.height - dy))


COPIES: dict[str, Callable[[Image.Image], bytes]] = {
    "JPEG q=50": lambda picture: encode(picture, 50),
    "resized to 50%": lambda picture: encode(resized(picture)),
    "cropped 5% (2.5% a side)": lambda picture: encode(cropped(picture)),
    "brightened 10%": lambda picture: encode(ImageEnhance.Brightness(picture).enhance(1.1)),
    "grey (colour originals)": lambda picture: encode(picture.convert("L")),
}


def service_hasher(timings: list[float]) -> Hasher:
    """The service's hash of in-memory bytes; each call's seconds go to `timings`."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
    import django

    django.setup()
    from images.duplicates.perceptual import perceptual_hash

    def hasher(data: bytes) -> str:
        started = time.perf_counter()
        phash = perceptual_hash(io.BytesIO(data))
        timings.append(time.perf_counter() - started)
        if phash is None:
            raise RuntimeError("the service could not hash a sample")
        return phash

    return hasher


def copy_distances(encoded: dict[str, bytes], hashes: dict[str, str], hasher: Hasher) -> Distances:
    from images.duplicates.perceptual import distance

    found: Distances = {kind: {} for kind in COPIES}
    for name, data in encoded.items():
        picture = decode(data)
        for kind, make in COPIES.items():
            if kind.startswith("grey") and picture.mode == "L":
                continue  # turning a grey photo grey copies nothing
            found[kind][name] = distance(hashes[name], hasher(make(picture)))
    return found


def pair_distances(hashes: dict[str, str]) -> list[int]:
    from images.duplicates.perceptual import distance

    return [distance(a, b) for a, b in itertools.combinations(hashes.values(), 2)]


def within(distances: list[int], limit: int) -> str:
    return f"{sum(d <= limit for d in distances) / len(distances):.0%}"


def row(label: str, count: str, distances: list[int], worst: int) -> str:
    median = statistics.median(distances)
    shares = " | ".join(within(distances, limit) for limit in DISTANCES)
    return f"| {label} | {count} | {median:g} | {worst} | {shares} |"


def table(copies: Distances, pairs: list[int]) -> list[str]:
    limits = " | ".join(f"≤ {limit}" for limit in DISTANCES)
    lines = [
        f"| copy | n | median distance | worst | {limits} |",
        "|---|---|---|---|" + "---|" * len(DISTANCES),
    ]
    for kind, named in copies.items():
        distances = list(named.values())
        lines.append(row(f"{kind}: recall", str(len(distances)), distances, max(distances)))
    label = "different originals: false positives"
    lines.append(row(label, f"{len(pairs)} pairs", pairs, min(pairs)))
    return lines


def details(copies: Distances) -> list[str]:
    return [
        f"{kind}: " + ", ".join(f"{name} {value}" for name, value in named.items())
        for kind, named in copies.items()
    ]


def measure() -> tuple[list[str], Distances, list[int], list[float]]:
    """The originals' names, the copies' distances, the distances between different originals
    and the seconds of every hash."""
    pictures = originals()
    encoded = {name: encode(picture) for name, picture in pictures.items()}
    timings: list[float] = []
    hasher = service_hasher(timings)
    hashes = {name: hasher(data) for name, data in encoded.items()}
    copies = copy_distances(encoded, hashes, hasher)
    return list(pictures), copies, pair_distances(hashes), timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="each copy's distance too")
    args = parser.parse_args(argv)
    names, copies, pairs, timings = measure()
    print(f"{len(names)} originals: {', '.join(names)}\n")
    print("\n".join(table(copies, pairs)))
    print("\nworst: a copy's largest distance to its original; the smallest between originals")
    if args.details:
        print("\n" + "\n".join(details(copies)))
    print(
        f"hash time per image (JPEG q=90 or q=50, from memory): median"
        f" {statistics.median(timings) * 1000:.2f} ms over {len(timings)} hashes,"
        f" load {load_average()}"
    )


if __name__ == "__main__":
    main()
